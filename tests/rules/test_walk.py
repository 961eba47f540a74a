"""Packet specs and the format-dispatching walk."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.rules.test_ipvs import IPVSADM
from tracer.errors import InputError, PathtraceError, UsageError
from tracer.model import Endpoint
from tracer.rules.model import Node
from tracer.rules.walk import load_rules, parse_packet, walk

DATA = Path(__file__).parent / "data"


def test_parse_packet_full_and_without_source_port() -> None:
    p = parse_packet("tcp 10.244.1.7:53700 > 10.96.0.100:80")
    assert (p.proto, p.src, p.dst, p.entry) == (
        "tcp",
        Endpoint("10.244.1.7", 53700),
        Endpoint("10.96.0.100", 80),
        "from_pod",
    )
    p = parse_packet("UDP 10.244.1.7>10.96.0.10:53")
    assert p.proto == "udp" and p.src.port is None


def test_source_on_the_node_is_locally_originated() -> None:
    assert (
        parse_packet("tcp 192.168.49.2 > 10.96.0.100:80", node=Node(("192.168.49.2",))).entry
        == "local"
    )
    assert parse_packet("tcp 192.168.49.2 > 10.96.0.100:80", entry="external").entry == "external"


@pytest.mark.parametrize(
    "spec",
    [
        "",
        "tcp 10.0.0.1 10.0.0.2:80",
        "icmp 10.0.0.1 > 10.0.0.2:80",
        "tcp 10.0.0.1 > 10.0.0.2",
        "tcp x > 10.0.0.2:80",
        "tcp 10.0.0.1 > 10.0.0.2:70000",
    ],
)
def test_bad_specs_say_the_expected_form(spec: str) -> None:
    with pytest.raises(UsageError, match="expected 'PROTO SRC_IP"):
        parse_packet(spec)


@given(st.text(max_size=60))
def test_any_spec_parses_or_is_a_usage_error(spec: str) -> None:
    try:
        parse_packet(spec)
    except UsageError:
        pass


@pytest.mark.parametrize(
    ("name", "mode"), [("iptables-nft-save.txt", "iptables"), ("nft-ruleset.txt", "nftables")]
)
def test_load_and_walk_each_format(name: str, mode: str) -> None:
    rules = load_rules((DATA / name).read_text())
    r = walk(rules, parse_packet("tcp 10.244.1.7 > 10.96.0.101:443"), Node(("192.168.49.2",)))
    assert r.mode == mode and [e.address for e in r.endpoints] == ["10.244.2.20:8443"]


def test_ipvs_rules_walk() -> None:
    r = walk(load_rules(IPVSADM), parse_packet("udp 10.244.1.7 > 10.0.0.10:53"), Node())
    assert r.mode == "ipvs" and [e.address for e in r.endpoints] == ["172.17.0.2:53"]


def test_conntrack_file_is_not_rules() -> None:
    with pytest.raises(InputError, match="conntrack"):
        load_rules(
            "tcp 6 10 ESTABLISHED src=1.1.1.1 dst=2.2.2.2 sport=1 dport=2 src=2.2.2.2 dst=1.1.1.1 sport=2 dport=1 [ASSURED]\n"
        )


@given(st.text(max_size=300))
def test_any_text_loads_or_raises_a_pathtrace_error(text: str) -> None:
    try:
        rules = load_rules(text)
    except PathtraceError:
        return
    walk(rules, parse_packet("tcp 10.244.1.7 > 10.96.0.100:80"), Node())

"""The narrative a user reads."""

from __future__ import annotations

from pathlib import Path

from tracer.rules.explain_text import describe, local_traffic_cidr
from tracer.rules.model import Node
from tracer.rules.walk import load_rules, parse_packet, walk

DATA = Path(__file__).parent / "data"
NODE = Node(("192.168.49.2",))


def test_three_endpoints_from_a_pod() -> None:
    rules = load_rules((DATA / "iptables-nft-save.txt").read_text())
    text = describe(
        walk(rules, parse_packet("tcp 10.244.1.7:53700 > 10.96.0.100:80"), NODE), rules, NODE
    )
    assert "enters nat PREROUTING" in text
    assert "“default/web:http cluster IP”" in text
    assert "one of 3 endpoints at random, each with probability 1/3" in text
    assert "not masqueraded because the source is inside the pod CIDR 10.244.0.0/16" in text
    assert "Verdict: DNAT" in text and "Rule path:" in text


def test_from_the_node_is_masqueraded() -> None:
    rules = load_rules((DATA / "nft-ruleset.txt").read_text())
    text = describe(
        walk(rules, parse_packet("tcp 192.168.49.2 > 10.96.0.101:443", node=NODE), NODE),
        rules,
        NODE,
    )
    assert "nat-output" in text and "It is masqueraded" in text


def test_drop_names_the_chain() -> None:
    rules = load_rules((DATA / "iptables-nft-save.txt").read_text())
    r = walk(rules, parse_packet("tcp 203.0.113.5 > 192.168.49.2:30082", entry="external"), NODE)
    assert (
        "dropped in filter KUBE-EXTERNAL-SERVICES (“default/np-remote:http has no local endpoints”)"
        in describe(r, rules, NODE)
    )


def test_local_traffic_cidr() -> None:
    assert local_traffic_cidr(load_rules((DATA / "nft-ruleset.txt").read_text())) == "10.244.0.0/16"

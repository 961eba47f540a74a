"""`--match` parsing and the choice of connection."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tracer.correlate import PointFrames, correlate, parse_match, select
from tracer.errors import NothingMatchedError, UsageError
from tracer.model import Endpoint
from tracer.testing import synth


def test_parse_match_terms() -> None:
    spec = parse_match("src=10.244.1.7:53700,dst=10.96.0.10:80,proto=tcp")
    assert spec.srcs == (Endpoint("10.244.1.7", 53700),)
    assert spec.dsts == (Endpoint("10.96.0.10", 80),)
    assert spec.protos == ("tcp",)


def test_parse_match_ipv6_and_portless() -> None:
    spec = parse_match("dst=[fd00::1]:80, src=fd00:10:244:1::7")
    assert spec.dsts == (Endpoint("fd00::1", 80),)
    assert spec.srcs == (Endpoint("fd00:10:244:1::7", None),)
    assert parse_match("dst=[fd00::1]").dsts == (Endpoint("fd00::1", None),)
    both = parse_match("dst=10.96.0.100:80,dst=10.244.2.9")
    assert both.dsts == (Endpoint("10.96.0.100", 80), Endpoint("10.244.2.9", None))


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ("src=10.244.1.7:99999", "src=10.244.1.7:99999"),
        ("dst=not-an-ip:80", "dst=not-an-ip:80"),
        ("proto=sctp", "proto=sctp"),
        ("port=80", "port=80"),
        ("src", "src"),
        ("src=10.0.0.1,,dst=10.0.0.2", ""),
        ("dst=[fd00::1:80", "dst=[fd00::1:80"),
        ("", ""),
    ],
)
def test_parse_match_errors_name_the_term(text: str, names: str) -> None:
    with pytest.raises(UsageError) as err:
        parse_match(text)
    assert names in str(err.value)
    assert err.value.exit_code == 2


def _two_connections() -> list[PointFrames]:
    """A DNS exchange then a TCP connection, seen at the same three points."""
    dns = synth.dns_scenario()
    tcp = synth.dnat_scenario(start_ns=synth.START_NS + 5_000_000)
    out = []
    for p in dns.points:
        other = {"coredns": "server"}.get(p.name, p.name)
        rows = tuple(sorted(dns.frames[p.name] + tcp.frames[other], key=lambda s: s.t_ns))
        out.append(PointFrames(p, synth.frames_from_specs(rows, p.name)))
    return out


def test_select_default_index_and_match() -> None:
    corr = correlate(_two_connections())
    assert len(corr) == 2
    assert [c.protocol for c in corr.connections] == ["udp", "tcp"]  # ordered by start
    # Both are seen at 3 points, but the lookup only resolved the name the TCP client then used.
    assert select(corr).protocol == "tcp"
    assert select(corr, match=parse_match("proto=udp")).index == 0
    assert select(corr, index=1).protocol == "tcp"
    assert select(corr, match=parse_match("proto=tcp")).index == 1
    # The backend address (after DNAT) matches too, and a port-less endpoint any port.
    assert select(corr, match=parse_match("dst=10.244.2.9:8080")).index == 1
    assert select(corr, match=parse_match("dst=10.96.0.10")).index == 0
    assert select(corr, match=parse_match("src=10.244.1.7:41234,proto=udp")).index == 0
    # Repeated keys must all hold: the Service address before DNAT and the pod's after it.
    assert select(corr, match=parse_match("dst=10.96.0.100:80,dst=10.244.2.9:8080")).index == 1
    assert select(corr, match=parse_match("dst=10.244.2.9:8080,dst=10.96.0.100")).index == 1


def test_select_nothing() -> None:
    corr = correlate(_two_connections())
    with pytest.raises(NothingMatchedError):
        select(corr, match=parse_match("dst=10.1.1.1"))
    with pytest.raises(NothingMatchedError):  # the last term does not simply win
        select(corr, match=parse_match("dst=10.96.0.10,dst=10.244.2.9:8080"))
    with pytest.raises(NothingMatchedError):
        select(corr, match=parse_match("proto=udp,proto=tcp"))
    with pytest.raises(NothingMatchedError):
        select(corr, index=5)
    with pytest.raises(NothingMatchedError):
        select(corr, index=0, match=parse_match("proto=tcp"))
    with pytest.raises(NothingMatchedError) as err:
        select(correlate([]))
    assert err.value.exit_code == 3


PCAPS = Path(__file__).resolve().parents[2] / "pcaps"


@pytest.mark.skipif(not PCAPS.is_dir(), reason="no lab runs")
@pytest.mark.parametrize(
    "run", ["clusterip", "drop", "no-endpoints", "stale-endpoint", "dns-nxdomain", "nodeport"]
)
def test_default_request_is_the_labs_request(run: str) -> None:
    from tracer.inputs import load_run

    truth = json.loads((PCAPS / run / "manifest.json").read_text())["extra"]["lab"]
    loaded = load_run(str(PCAPS / run))
    corr = correlate(loaded.points)
    conn = select(corr)
    # The lab's frontend is what the client asked for: the Service, or the DNS server when
    # the run is only lookups (dns-nxdomain).
    assert str(conn.client.dst) == truth["frontend"]
    if truth["backend"] is not None:
        assert str(conn.backend) == truth["backend"]
    assert conn.points[0] == truth["expected_path"][0]


def test_dns_only_run_keeps_the_lookup() -> None:
    dns = synth.dns_scenario()
    corr = correlate(
        [PointFrames(p, synth.frames_from_specs(dns.frames[p.name], p.name)) for p in dns.points]
    )
    assert select(corr).protocol == "udp"

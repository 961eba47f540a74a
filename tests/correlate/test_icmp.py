"""ICMP errors linked to the packet they quote: REJECT, fragmentation needed, TTL exceeded."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tracer.correlate import PointFrames, build_path, correlate, select
from tracer.inputs import load_run
from tracer.model import CapturePoint
from tracer.pcap.columns import DIR_IN, DIR_OUT, TH_ACK, TH_PSH, TH_SYN
from tracer.testing.synth import START_NS, Pkt, Sighting, frames_from_specs, icmp_quote

PCAPS = Path(__file__).resolve().parents[2] / "pcaps"
CLIENT, SERVICE, BACKEND, NODE = "10.244.1.7", "10.96.0.104", "10.244.2.9", "10.244.1.1"

POINTS = (
    CapturePoint("client", "client", "client.pcap", node="node-a"),
    CapturePoint("node-a", "node", "node-a.pcap", node="node-a"),
)


def _run(packet: Pkt, error: Pkt, dnat: bool) -> list[PointFrames]:
    """`packet` leaves the client, reaches node-a (DNATed on the way out when `dnat`), and
    node-a answers with `error` quoting the packet as the client sent it (conntrack has already
    rewritten the quote of a DNATed packet back, as it does the error's addresses)."""
    t = START_NS
    after = Pkt(**{**packet.__dict__, "dst": BACKEND, "dport": 8080}) if dnat else packet
    client = [
        Sighting(t, packet, "eth0", DIR_OUT),
        Sighting(t + 60_000, error, "eth0", DIR_IN),
    ]
    node = [Sighting(t + 10_000, packet, "veth1", DIR_IN)]
    if dnat:
        node.append(Sighting(t + 20_000, after, "eth0", DIR_OUT))
    node.append(Sighting(t + 50_000, error, "veth1", DIR_OUT))
    return [
        PointFrames(POINTS[0], frames_from_specs(client, "client")),
        PointFrames(POINTS[1], frames_from_specs(node, "node-a")),
    ]


SYN = Pkt("tcp", CLIENT, SERVICE, 40000, 80, seq=123456789, flags=TH_SYN, ip_id=7, mss=1460)
DATA = Pkt(
    "tcp",
    CLIENT,
    SERVICE,
    40000,
    80,
    seq=123456790,
    ack=99,
    flags=TH_ACK | TH_PSH,
    payload=b"x" * 1400,
    ip_id=8,
)


@pytest.mark.parametrize(
    ("name", "packet", "icmp_type", "icmp_code", "dnat", "words"),
    [
        ("reject", SYN, 3, 3, False, "port-unreachable"),
        ("frag-needed", DATA, 3, 4, True, "fragmentation"),
        ("ttl-exceeded", SYN, 11, 0, True, "time-exceeded"),
    ],
)
def test_icmp_error_is_linked_to_the_packet_it_quotes(
    name: str, packet: Pkt, icmp_type: int, icmp_code: int, dnat: bool, words: str
) -> None:
    error = Pkt(
        "icmp",
        NODE,
        CLIENT,
        payload=icmp_quote(packet),
        icmp_type=icmp_type,
        icmp_code=icmp_code,
        ip_id=300,
    )
    # A second connection from the same client whose ports differ: it must not get the error.
    corr = correlate(_run(packet, error, dnat))
    tcp = [c for c in corr.connections if c.protocol == "tcp"]
    icmp = [c for c in corr.connections if c.protocol == "icmp"]
    assert len(tcp) == 1 and len(icmp) == 1
    assert corr.icmp_links == {tcp[0].index: (icmp[0].index,)}
    path = build_path(corr, tcp[0])
    assert [h.point for h in path.reverse] == ["node-a", "client"]
    assert all(h.tuple5.proto == "icmp" for h in path.reverse)
    assert any(words in w and NODE in w for w in path.warnings)
    assert not any("no reply was captured" in w for w in path.warnings)


def test_error_quoting_another_port_stays_unlinked() -> None:
    other = Pkt(**{**SYN.__dict__, "sport": 40001})
    error = Pkt("icmp", NODE, CLIENT, payload=icmp_quote(other), icmp_type=3, icmp_code=3)
    corr = correlate(_run(SYN, error, False))
    assert corr.icmp_links == {}
    path = build_path(corr, select(corr))
    assert path.reverse == ()
    assert any("no reply was captured" in w for w in path.warnings)


def test_error_quoting_another_seq_stays_unlinked() -> None:
    other = Pkt(**{**SYN.__dict__, "seq": 5})
    error = Pkt("icmp", NODE, CLIENT, payload=icmp_quote(other), icmp_type=3, icmp_code=3)
    assert correlate(_run(SYN, error, False)).icmp_links == {}


def _lab(run: str) -> tuple[dict[str, Any], list[PointFrames]]:
    truth = json.loads((PCAPS / run / "manifest.json").read_text())["extra"]["lab"]
    loaded = load_run(str(PCAPS / run))
    return truth, loaded.points


@pytest.mark.skipif(not PCAPS.is_dir(), reason="no lab runs")
def test_no_endpoints_reject_answers_the_syn() -> None:
    truth, pfs = _lab("no-endpoints")
    corr = correlate(pfs)
    path = build_path(corr, select(corr))
    assert truth["outcome"] == "refused"
    assert path.request.destination == truth["frontend"]
    # REJECT in node1's filter table: the SYN goes client -> node1 and no further, and the port
    # unreachable comes back from node1 to the client.
    fwd = list(dict.fromkeys(h.point for h in path.forward))
    assert fwd == truth["expected_path"]
    back = list(dict.fromkeys(h.point for h in path.reverse))
    assert back == list(reversed(truth["expected_path"]))
    assert path.reverse[0].tuple5.proto == "icmp"
    assert any("port-unreachable" in w for w in path.warnings)


@pytest.mark.skipif(not PCAPS.is_dir(), reason="no lab runs")
def test_stale_endpoint_host_unreachable_comes_back_from_node2() -> None:
    truth, pfs = _lab("stale-endpoint")
    corr = correlate(pfs)
    path = build_path(corr, select(corr))
    assert truth["outcome"] == "unreachable"
    back = list(dict.fromkeys(h.point for h in path.reverse))
    assert back == list(reversed(truth["expected_path"]))
    # node1 un-DNATs the quote and the error's source on the way back.
    assert any(h.translation is not None for h in path.reverse)
    assert str(path.reverse[-1].tuple5.src.ip) == truth["frontend"].split(":")[0]

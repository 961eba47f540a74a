"""Correlating synthetic scenarios whose truth comes from the generator's configuration."""

from __future__ import annotations

import pytest

from tracer.correlate import Correlation, PointFrames, correlate, select, translations
from tracer.model import Connection, Journey
from tracer.pcap.columns import Frames
from tracer.testing import synth


def _run(sc: synth.Scenario) -> tuple[Correlation, Connection]:
    corr = correlate(sc.point_frames())
    return corr, select(corr)


def _sightings(j: Journey) -> list[tuple[str, int]]:
    return [(o.point, o.frame) for o in j.observations]


def _assert_journeys_match_truth(sc: synth.Scenario, conn: Connection) -> None:
    """Every true packet is exactly one journey with the same sightings in path order."""
    got = sorted((_sightings(j), j.direction, j.retransmission) for j in conn.journeys)
    want = sorted((list(p.sightings), p.direction, p.retransmission) for p in sc.packets)
    assert got == want


def test_dnat_hop_addresses_and_translations() -> None:
    sc = synth.dnat_scenario(offsets={"node-b": 7_000_000})
    corr, conn = _run(sc)
    assert len(corr) == 1
    _assert_journeys_match_truth(sc, conn)
    assert conn.client == sc.client
    assert str(conn.client.dst) == "10.96.0.100:80"
    assert str(conn.backend) == "10.244.2.9:8080"
    assert conn.points == ("client", "node-a", "server")
    syn = next(j for j in conn.journeys if j.kind == "syn")
    assert [o.tuple5 for o in syn.observations] == [s.tuple5 for s in sc.stages]
    got = [(tr.kind, tr.before, tr.after) for tr in translations(syn)]
    assert got == [(tr.kind, tr.before, tr.after) for _, tr in sc.forward_translations]
    synack = next(j for j in conn.journeys if j.kind == "syn-ack")
    assert [tr.kind for tr in translations(synack)] == ["un-DNAT"]
    assert corr.warnings == ()


def test_nodeport_dnat_snat_with_random_fully_port() -> None:
    sc = synth.nodeport_scenario(offsets={"external": -2_000_000, "node-b": 3_000_000})
    corr, conn = _run(sc)
    _assert_journeys_match_truth(sc, conn)
    syn = next(j for j in conn.journeys if j.kind == "syn")
    (tr,) = translations(syn)
    assert tr.kind == "DNAT+SNAT"
    assert str(tr.before) == "tcp 203.0.113.2:45752 > 192.168.0.2:30080"
    assert str(tr.after) == "tcp 10.244.1.0:16903 > 10.244.2.9:8080"
    synack = next(j for j in conn.journeys if j.kind == "syn-ack")
    (rtr,) = translations(synack)
    assert rtr.kind == "un-DNAT+un-SNAT"
    assert str(rtr.after) == "tcp 192.168.0.2:30080 > 203.0.113.2:45752"
    assert conn.client.src.port == 45752
    assert conn.backend is not None and conn.backend.port == 8080


def test_overlay_sightings_on_one_node_are_one_journey() -> None:
    sc = synth.overlay_scenario(offsets={"node-b": -4_000_000})
    corr, conn = _run(sc)
    _assert_journeys_match_truth(sc, conn)
    syn = next(j for j in conn.journeys if j.kind == "syn")
    node_a = [(o.interface, o.direction) for o in syn.observations if o.point == "node-a"]
    assert node_a == [
        ("veth1a2b3c", "in"),
        ("cni0", "in"),
        ("flannel.1", "out"),
        ("eth0", "out"),
    ]
    eth0 = next(o for o in syn.observations if o.point == "node-a" and o.interface == "eth0")
    assert "vxlan" in eth0.encap
    # The DNAT shows on the bridge (bridge netfilter), and nowhere else.
    assert [(tr.kind, tr.after.dst.ip) for tr in translations(syn)] == [("DNAT", "10.244.2.9")]


def test_loopback_duplicates_stay_observations_of_one_journey() -> None:
    sc = synth.loopback_scenario()
    corr, conn = _run(sc)
    _assert_journeys_match_truth(sc, conn)
    assert len(conn.journeys) == len(sc.packets)
    for j in conn.journeys:
        assert [o.direction for o in j.observations] == ["out", "in"]


def test_retransmission_is_a_separate_journey() -> None:
    sc = synth.dnat_scenario(retransmit=True)
    corr, conn = _run(sc)
    _assert_journeys_match_truth(sc, conn)
    data = [j for j in conn.journeys if j.kind == "data" and j.direction == "forward"]
    assert [j.retransmission for j in data] == [0, 1]
    assert data[0].observations[0].ip_id != data[1].observations[0].ip_id


def test_retransmission_without_timestamps_or_ids_is_split_by_time() -> None:
    # IPv6 has no ID field; with the TS option off, only time tells the two sends apart.
    sc = synth.dnat_scenario(ipv6=True, retransmit=True, timestamps=False)
    corr, conn = _run(sc)
    _assert_journeys_match_truth(sc, conn)


def test_ipv6() -> None:
    sc = synth.dnat_scenario(ipv6=True, offsets={"node-b": 1_000_000})
    corr, conn = _run(sc)
    _assert_journeys_match_truth(sc, conn)
    assert str(conn.client.dst) == "[fd00:10:96::100]:80"
    assert str(conn.backend) == "[fd00:10:244:2::9]:8080"


def test_dns_over_udp() -> None:
    sc = synth.dns_scenario()
    corr, conn = _run(sc)
    _assert_journeys_match_truth(sc, conn)
    assert conn.protocol == "udp"
    assert str(conn.backend) == "10.244.2.5:53"
    assert [j.direction for j in conn.journeys] == ["forward", "reverse"]


def test_icmp_echo_exchange() -> None:
    sc = synth.icmp_scenario()
    corr, conn = _run(sc)
    _assert_journeys_match_truth(sc, conn)
    assert conn.protocol == "icmp"
    assert conn.backend is None


@pytest.mark.parametrize("offset", [0, 3_000_000, -250_000_000, 40_000_000_000])
def test_clock_offset_recovered_within_reported_bound(offset: int) -> None:
    sc = synth.dnat_scenario(offsets={"node-b": offset}, delays_ns=(15_000, 30_000, 90_000))
    corr, _ = _run(sc)
    (est,) = corr.clocks
    assert est.node == "node-b" and est.reference == "node-a"
    assert abs(est.offset_ns - offset) <= est.error_bound_ns
    # The bound is half the smallest round trip between the domains: 90 µs each way.
    assert est.error_bound_ns == 90_000


def test_asymmetric_delays_bound_still_holds() -> None:
    # Forward and reverse delays differ (the truth offset is not the midpoint).
    sc = synth.dnat_scenario(offsets={"node-b": 5_000_000}, delays_ns=(15_000, 30_000, 200_000))
    frames = {k: list(v) for k, v in sc.frames.items()}
    # Delay every reply seen at the server by 80 µs at its send: shift server-side reverse
    # sightings earlier, which makes server->node-a slower than node-a->server.
    pkts = {p.id: p for p in sc.packets}
    for i, s in enumerate(frames["server"]):
        if pkts[s.packet].direction == "reverse":
            frames["server"][i] = synth.Sighting(
                s.t_ns - 80_000, s.pkt, s.iface, s.direction, s.vxlan, s.packet
            )
    pfs = [
        PointFrames(p, synth.frames_from_specs(tuple(frames[p.name]), p.name)) for p in sc.points
    ]
    (est,) = correlate(pfs).clocks
    assert abs(est.offset_ns - 5_000_000) <= est.error_bound_ns
    assert est.offset_ns != 5_000_000


def test_one_way_only_reports_upper_bound_and_warns() -> None:
    sc = synth.dnat_scenario(offsets={"node-b": 2_000_000})
    pkts = {p.id: p for p in sc.packets}
    server = tuple(s for s in sc.frames["server"] if pkts[s.packet].direction == "forward")
    pfs = []
    for p in sc.points:
        rows = server if p.name == "server" else sc.frames[p.name]
        pfs.append(PointFrames(p, synth.frames_from_specs(rows, p.name)))
    corr = correlate(pfs)
    (est,) = corr.clocks
    assert est.error_bound_ns == -1
    # θ ≤ min forward delay: the estimate is the truth plus the smallest network delay.
    assert est.offset_ns == 2_000_000 + 120_000
    assert any("one direction only" in w for w in corr.warnings)


def test_empty_input() -> None:
    corr = correlate([])
    assert len(corr) == 0 and corr.connections == ()


def test_captures_without_interface_ids() -> None:
    # A plain pcap (or SLL v1) says nothing about the interface: matching must not need it.
    sc = synth.overlay_scenario(offsets={"node-b": 1_000})
    pfs = []
    for pf in sc.point_frames():
        cols = dict(pf.frames.columns)
        cols["iface"] = cols["iface"] * 0 - 1
        cols["direction"] = cols["direction"] * 0
        frames = Frames(
            pf.frames.path, pf.frames.linktypes, cols, pf.frames.encaps, pf.frames.addresses
        )
        pfs.append(PointFrames(pf.point, frames))
    corr = correlate(pfs)
    conn = select(corr)
    _assert_journeys_match_truth(sc, conn)
    assert all(o.interface is None for j in conn.journeys for o in j.observations)

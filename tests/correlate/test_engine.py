"""Correlating synthetic scenarios whose truth comes from the generator's configuration."""

from __future__ import annotations

import dataclasses
import ipaddress
from pathlib import Path

import numpy as np
import pytest

from tracer.correlate import Correlation, PointFrames, correlate, select, translations
from tracer.correlate.engine import _address_luts
from tracer.inputs import load_run
from tracer.model import Connection, Journey
from tracer.pcap import read_frames
from tracer.pcap.columns import Frames, empty_columns
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


def test_contradicting_match_is_split_not_merged() -> None:
    # Two DNS clients send byte-identical queries (same txid, same name) at the same time:
    # the signatures collide at the node, but each client's flow must stay its own connection.
    a = synth.dns_scenario(txid=0x1111)
    b = synth.dns_scenario(txid=0x1111, start_ns=synth.START_NS + 3_000)
    pfs = []
    for p in a.points:
        rows_b = tuple(
            synth.Sighting(
                s.t_ns,
                _moved(s.pkt),
                s.iface,
                s.direction,
                s.vxlan,
                s.packet + 100,
            )
            for s in b.frames[p.name]
        )
        merged = tuple(sorted(a.frames[p.name] + rows_b, key=lambda s: s.t_ns))
        pfs.append(PointFrames(p, synth.frames_from_specs(merged, p.name)))
    corr = correlate(pfs)
    clients = {c.client.src.ip for c in corr.connections}
    assert clients == {"10.244.1.7", "10.244.1.8"}
    for c in corr.connections:
        learned = {(pt, tup) for pt, tup in c.tuples}
        for j in c.journeys:
            for o in j.observations:
                tup = o.tuple5 if j.direction == "forward" else o.tuple5.reversed()
                assert (o.point, tup) in learned
                assert c.client.src.ip in (tup.src.ip, tup.dst.ip)


def _moved(pkt: synth.Pkt) -> synth.Pkt:
    from dataclasses import replace

    swap = {"10.244.1.7": "10.244.1.8"}
    return replace(pkt, src=swap.get(pkt.src, pkt.src), dst=swap.get(pkt.dst, pkt.dst))


def test_unmatched_point_and_non_ip_are_warned() -> None:
    sc = synth.dnat_scenario()
    other = synth.dns_scenario()
    pfs = sc.point_frames()[:2]
    stray = other.point_frames()[2]
    pfs.append(stray)
    # Two ARP-like frames (no IP) appended to the client's capture.
    client = pfs[0].frames
    extra = empty_columns(2)
    extra["t_ns"][:] = synth.START_NS
    cols = {k: np.concatenate([v, extra[k]]) for k, v in client.columns.items()}
    pfs[0] = PointFrames(
        pfs[0].point, Frames(client.path, client.linktypes, cols, client.encaps, client.addresses)
    )
    corr = correlate(pfs)
    assert "point coredns: no packet matched any other point" in corr.warnings
    assert "point client: 2 frames were not IP" in corr.notes
    assert not any("were not IP" in w for w in corr.warnings)
    assert len(select(corr).journeys) == 10


def test_negative_delay_is_flagged() -> None:
    # A server clock stamped 1 ms too early only on replies looks like travel back in time.
    sc = synth.dnat_scenario(offsets={"node-b": 0})
    frames = dict(sc.frames)
    pkts = {p.id: p for p in sc.packets}
    shifted = tuple(
        synth.Sighting(
            s.t_ns + (1_000_000 if pkts[s.packet].direction == "reverse" else 0),
            s.pkt,
            s.iface,
            s.direction,
            s.vxlan,
            s.packet,
        )
        for s in frames["server"]
    )
    pfs = [
        PointFrames(p, synth.frames_from_specs(shifted if p.name == "server" else frames[p.name]))
        for p in sc.points
    ]
    corr = correlate(pfs)
    assert any("negative one-way delay" in w for w in corr.warnings)


def test_empty_input() -> None:
    corr = correlate([])
    assert len(corr) == 0 and corr.connections == ()


def test_port_reuse_starts_a_new_connection() -> None:
    # The same client port twice, a second apart: two SYNs with different ISNs.
    a = synth.dnat_scenario(seed=1)
    b = synth.dnat_scenario(seed=2, start_ns=synth.START_NS + 1_000_000_000)
    pfs = [
        PointFrames(p, synth.frames_from_specs(a.frames[p.name] + b.frames[p.name], p.name))
        for p in a.points
    ]
    corr = correlate(pfs)
    assert len(corr) == 2
    assert [len(c.journeys) for c in corr.connections] == [10, 10]
    assert corr.connections[0].client == corr.connections[1].client


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


def test_address_tables_merge_the_same_by_number_and_by_text() -> None:
    """The reader's numeric IPv4 keys merge the points' address tables to the same addresses
    as merging their texts (IPv6 addresses, which have no numeric key, by text in both)."""
    run = Path(__file__).resolve().parents[2] / "pcaps" / "ingress"
    points = load_run(run).points
    assert all(p.frames.address_keys is not None for p in points)
    by_number = _address_luts(points)
    by_text = _address_luts(
        [
            dataclasses.replace(p, frames=dataclasses.replace(p.frames, address_keys=None))
            for p in points
        ]
    )
    for merged, luts in (by_number, by_text):
        for p, lut in zip(points, luts, strict=True):
            assert [merged[i] for i in lut[:-1]] == list(p.frames.addresses)
            assert lut[-1] == -1
    assert sorted(by_number[0]) == sorted(by_text[0])


def test_address_keys_hold_each_ipv4_address_as_its_number() -> None:
    cap = next((Path(__file__).resolve().parents[2] / "pcaps" / "clusterip").glob("**/*.pcap*"))
    frames = read_frames(cap)
    assert frames.address_keys is not None
    for text, key in zip(frames.addresses, frames.address_keys.tolist(), strict=True):
        ip = ipaddress.ip_address(text)
        assert key == (int(ip) if ip.version == 4 else -1)

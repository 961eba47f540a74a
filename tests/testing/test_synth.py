"""Scenario truth is self-consistent, and the columns agree with the bytes (scapy as oracle)."""

from __future__ import annotations

import pytest

from tracer.pcap.columns import OPT_TS, payload_hash
from tracer.testing import synth
from tracer.testing.wire import frame_bytes

ALL = [
    synth.dnat_scenario,
    synth.overlay_scenario,
    synth.nodeport_scenario,
    synth.dns_scenario,
    synth.icmp_scenario,
    synth.loopback_scenario,
]


@pytest.mark.parametrize("make", ALL)
def test_truth_points_at_frames_of_that_packet(make: object) -> None:
    sc = make()  # type: ignore[operator]
    for p in sc.packets:
        for (point, idx), tup in zip(p.sightings, p.tuples, strict=True):
            s = sc.frames[point][idx]
            assert s.packet == p.id
            assert (s.pkt.src, s.pkt.dst) == (tup.src.ip, tup.dst.ip)
    for rows in sc.frames.values():
        assert [s.t_ns for s in rows] == sorted(s.t_ns for s in rows)


def test_offsets_are_applied_per_node() -> None:
    plain = synth.overlay_scenario()
    moved = synth.overlay_scenario(offsets={"node-b": 123_456})
    for point in ("client", "node-a"):
        assert [s.t_ns for s in moved.frames[point]] == [s.t_ns for s in plain.frames[point]]
    for point in ("node-b", "server"):
        assert [s.t_ns for s in moved.frames[point]] == [
            s.t_ns + 123_456 for s in plain.frames[point]
        ]
    syn = moved.first("syn")
    assert moved.frames["server"][syn.sightings[-1][1]].t_ns == syn.true_ns[-1] + 123_456


@pytest.mark.parametrize("make", ALL)
def test_columns_agree_with_the_bytes(make: object) -> None:
    from scapy.layers.inet import ICMP, IP, TCP, UDP
    from scapy.layers.inet6 import IPv6
    from scapy.layers.l2 import Ether
    from scapy.layers.vxlan import VXLAN

    sc = make()  # type: ignore[operator]
    for point, rows in sc.frames.items():
        fr = sc.columns(point)
        c = fr.columns
        for i, s in enumerate(rows):
            pkt = Ether(frame_bytes(s))
            if pkt.haslayer(VXLAN):
                pkt = pkt[VXLAN].payload
            ip = pkt[IP] if pkt.haslayer(IP) else pkt[IPv6]
            assert fr.addresses[c["src"][i]] == ip.src
            assert fr.addresses[c["dst"][i]] == ip.dst
            assert c["ttl"][i] == (ip.ttl if pkt.haslayer(IP) else ip.hlim)
            assert c["t_ns"][i] == s.t_ns
            if pkt.haslayer(IP):
                assert c["ip_id"][i] == ip.id
            l4 = next(pkt[x] for x in (TCP, UDP, ICMP) if pkt.haslayer(x))
            payload = bytes(l4.payload)
            if isinstance(l4, ICMP):
                payload = bytes(l4)[8:]
            assert c["payload_len"][i] == len(payload)
            assert c["phash"][i] == payload_hash(payload)
            if isinstance(l4, TCP):
                assert (c["seq"][i], c["ack"][i], c["tcp_flags"][i]) == (
                    l4.seq,
                    l4.ack,
                    int(l4.flags),
                )
                assert (c["sport"][i], c["dport"][i]) == (l4.sport, l4.dport)
                ts = dict(l4.options).get("Timestamp")
                assert bool(c["opts"][i] & OPT_TS) == (ts is not None)
                if ts is not None:
                    assert (c["tsval"][i], c["tsecr"][i]) == ts
            if isinstance(l4, ICMP):
                assert (c["icmp_type"][i], c["icmp_seq"][i]) == (l4.type, l4.seq)


def test_bulk_dnat_connections_are_distinct() -> None:
    points, frames = synth.bulk_dnat(50, seed=3)
    assert [p.name for p in points] == ["client", "node-a", "server"]
    assert {k: len(v) for k, v in frames.items()} == {"client": 500, "node-a": 1000, "server": 500}
    c = frames["client"].columns
    syn = c["tcp_flags"] == 0x02
    assert len(set(zip(c["src"][syn].tolist(), c["sport"][syn].tolist(), strict=True))) == 50
    assert (c["t_ns"][1:] >= c["t_ns"][:-1]).all()

"""The offload scenarios say what the kernel would have put on the wire and in each capture."""

from __future__ import annotations

from pathlib import Path

from tracer.pcap.columns import DIR_IN, DIR_OUT, OPT_SUPER, OPT_TS, TH_PSH, TH_SYN, payload_hash
from tracer.pcap.reader import read_frames
from tracer.testing.offload import (
    ipv6_retransmit_scenario,
    isn_shift_scenario,
    tso_scenario,
    write_offload_pcaps,
)
from tracer.testing.synth import dnat_scenario


def test_wire_segments_are_what_tso_makes_of_the_super_segment() -> None:
    osc = tso_scenario(size=64_000, mss=1448, gro=8)
    sc = osc.scenario
    (sender,) = [s for s in osc.supers if s.byte == "first"]
    sup = sc.frames["client"][sender.frame].pkt
    assert len(sup.payload) == 64_000
    veth = [
        s.pkt
        for s in sc.frames["node-a"]
        if s.iface == "veth1a2b3c" and s.pkt.payload and s.pkt.sport == 53700
    ]
    assert len(veth) == -(-64_000 // 1448) == 45
    # MSS-sized pieces, in order, that add up to the super-segment's bytes.
    assert b"".join(p.payload for p in veth) == sup.payload
    assert all(len(p.payload) == 1448 for p in veth[:-1]) and len(veth[-1].payload) == 288
    assert [p.seq for p in veth] == [(sup.seq + 1448 * k) % 2**32 for k in range(45)]
    # TSO: IDs id..id+n-1, the same ack and TSval everywhere, PSH only on the last segment.
    assert [p.ip_id for p in veth] == [(sup.ip_id + k) & 0xFFFF for k in range(45)]
    assert {(p.ack, p.tsval, p.tsecr) for p in veth} == {(sup.ack, sup.tsval, sup.tsecr)}
    assert [bool(p.flags & TH_PSH) for p in veth] == [False] * 44 + [True]


def test_gro_merges_carry_the_first_segments_id_and_the_last_ones_time() -> None:
    d1, d2, d3 = 15_000, 30_000, 120_000
    osc = tso_scenario(gro=8, delays_ns=(d1, d2, d3), offsets={"node-b": 7_000_000})
    sc = osc.scenario
    eth0 = [
        s
        for s in sc.frames["node-a"]
        if s.iface == "eth0" and s.pkt.payload and s.pkt.sport == 53700
    ]
    merges = [s for s in osc.supers if s.byte == "last"]
    assert len(merges) == 6  # 45 segments, 8 per merge
    for m in merges:
        got = sc.frames["server"][m.frame]
        assert got.direction == DIR_IN
        pieces = [s for s in eth0 if m.seq <= s.pkt.seq < (m.seq + m.length) % 2**32]
        assert got.pkt.payload == b"".join(s.pkt.payload for s in pieces)
        assert got.pkt.ip_id == pieces[0].pkt.ip_id
        # Stamped when the merge's last segment arrived (node-b's clock is 7 ms ahead).
        assert got.t_ns == pieces[-1].t_ns + d3 + 7_000_000


def test_the_sender_super_segment_leaves_before_its_first_wire_segment() -> None:
    d1 = 15_000
    osc = tso_scenario(delays_ns=(d1, 30_000, 120_000))
    sc = osc.scenario
    (sender,) = [s for s in osc.supers if s.byte == "first"]
    at_client = sc.frames["client"][sender.frame]
    assert at_client.direction == DIR_OUT
    first_wire = sc.frames["node-a"][min(sender.covers["node-a"])]
    assert first_wire.t_ns - at_client.t_ns == d1
    truth = sc.packets[sender.packet]
    assert ("client", sender.frame) in truth.sightings


def test_total_length_zero_reads_back_as_a_super_segment(tmp_path: Path) -> None:
    osc = tso_scenario(size=20_000)
    paths = write_offload_pcaps(osc, tmp_path, total_length_zero=True)
    fr = read_frames(paths["client"])
    (sender,) = [s for s in osc.supers if s.byte == "first"]
    row = sender.frame
    payload = osc.scenario.frames["client"][row].pkt.payload
    assert int(fr.columns["opts"][row]) & OPT_SUPER
    assert int(fr.columns["payload_len"][row]) == 20_000
    assert int(fr.columns["phash"][row]) == payload_hash(payload)
    # Every other frame keeps its real length.
    node = read_frames(paths["node-a"])
    assert not (node.columns["opts"].astype(int) & OPT_SUPER).any()


def test_isn_shift_rewrites_only_the_servers_view() -> None:
    plain = dnat_scenario(seed=6)
    sc = isn_shift_scenario(forward=1_000_000, reverse=42, mss_clamp=1360, seed=6)
    assert sc.frames["client"] == plain.frames["client"]
    assert sc.frames["node-a"] == plain.frames["node-a"]
    syn_c = next(s.pkt for s in sc.frames["client"] if s.pkt.flags == TH_SYN)
    syn_s = next(s.pkt for s in sc.frames["server"] if s.pkt.flags == TH_SYN)
    assert syn_s.seq == (syn_c.seq + 1_000_000) % 2**32
    assert (syn_c.mss, syn_s.mss) == (1448, 1360)
    synack_s = next(s.pkt for s in sc.frames["server"] if s.pkt.flags == TH_SYN | 0x10)
    synack_c = next(s.pkt for s in sc.frames["client"] if s.pkt.flags == TH_SYN | 0x10)
    assert synack_s.seq == (synack_c.seq + 42) % 2**32
    assert synack_s.ack == (syn_s.seq + 1) % 2**32
    assert sc.packets == plain.packets


def test_ipv6_without_timestamps_and_a_lost_first_send() -> None:
    sc = ipv6_retransmit_scenario(lost=True)
    cols = sc.columns("client").columns
    assert set(cols["family"].tolist()) == {6}
    assert not (cols["opts"].astype(int) & OPT_TS).any()
    assert set(cols["ip_id"].tolist()) == {-1}
    data = [p for p in sc.packets if p.kind == "data" and p.direction == "forward"]
    original, again = data
    assert (original.retransmission, again.retransmission) == (0, 1)
    assert [pt for pt, _ in original.sightings] == ["client", "node-a", "node-a"]
    assert [pt for pt, _ in again.sightings] == ["client", "node-a", "node-a", "server"]
    # The server's frames are re-indexed: every truth sighting names the right frame.
    for p in sc.packets:
        for (pt, fr), tup in zip(p.sightings, p.tuples, strict=True):
            pkt = sc.frames[pt][fr].pkt
            assert (pkt.src, pkt.sport, pkt.dst, pkt.dport) == (
                tup.src.ip,
                tup.src.port,
                tup.dst.ip,
                tup.dst.port,
            )
            assert sc.frames[pt][fr].packet == p.id
    assert len(sc.frames["server"]) == len(ipv6_retransmit_scenario().frames["server"]) - 1


def test_a_tso_response_is_cut_on_the_way_back_and_merged_at_the_client() -> None:
    osc = tso_scenario(size=3000, response_size=20_000, gro=4)
    sc = osc.scenario
    # The response's super-segments: TSO at the server, GRO at the client.
    back = [s for s in osc.supers if (s.point, s.byte) in {("server", "first"), ("client", "last")}]
    sender = [s for s in back if s.byte == "first"]
    merges = [s for s in back if s.byte == "last"]
    assert [(s.point, s.length) for s in sender] == [("server", 20_000)]
    assert sc.frames["server"][sender[0].frame].direction == DIR_OUT
    assert {s.point for s in merges} == {"client"}
    assert sum(s.length for s in merges) == 20_000
    for m in merges:
        got = sc.frames["client"][m.frame]
        assert got.direction == DIR_IN
        pieces = [sc.frames["node-a"][f].pkt for f in m.covers["node-a"]]
        # Each wire segment shows twice at node-a (eth0 in, the pod's veth out).
        assert got.pkt.payload == b"".join(p.payload for p in pieces[::2])

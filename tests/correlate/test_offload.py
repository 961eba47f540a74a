"""Super-segments matched by sequence range; firewall sequence shifts learned from the SYN."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
from hypothesis import given, settings
from hypothesis import strategies as st

from tracer.correlate import Correlation, PointFrames, build_path, correlate, select
from tracer.correlate.offload import (
    END_MIDDLE,
    END_RECEIVER,
    END_SENDER,
    Covers,
    find_covers,
    join_targets,
    learn_isn_shifts,
    regroup_by_time,
    relative_seq,
    signed_shift,
    uses_last_byte,
)
from tracer.correlate.path import offload_note
from tracer.pcap.columns import DIR_IN, DIR_OUT, DIR_UNKNOWN
from tracer.pcap.reader import read_frames
from tracer.testing.offload import (
    ipv6_retransmit_scenario,
    isn_shift_scenario,
    tso_scenario,
    write_offload_pcaps,
)
from tracer.testing.synth import Scenario, dnat_scenario

I64 = npt.NDArray[np.int64]
RANK = np.array([0, 1, 2])  # client, node-a, server: the scenarios' points in path order


@dataclass
class Rows:
    """Every frame of every point as one set of columns (global address ids), like the engine."""

    cols: dict[str, npt.NDArray[np.int64]]
    pidx: I64
    frame: I64
    t: I64
    packet: I64  # the truth packet each row shows
    rank: I64
    points: list[str]


def _rows(sc: Scenario) -> Rows:
    names: tuple[str, ...] = (
        "seq",
        "ack",
        "tcp_flags",
        "tsval",
        "tsecr",
        "opts",
        "ip_id",
        "payload_len",
    )
    names += ("phash", "src", "dst", "sport", "dport", "proto", "iface", "direction", "t_ns")
    parts: dict[str, list[npt.NDArray[np.int64]]] = {n: [] for n in names}
    pidx, frame, packet, rank = [], [], [], []
    addr: dict[str, int] = {}
    role_rank = {"client": 0, "node": 1, "server": 2}
    for pi, p in enumerate(sc.points):
        fr = sc.columns(p.name)
        lut = np.array([addr.setdefault(a, len(addr)) for a in fr.addresses], dtype=np.int64)
        for n in names:
            v = np.asarray(fr.columns[n]).astype(np.int64)
            parts[n].append(lut[v] if n in ("src", "dst") else v)
        k = len(fr)
        pidx.append(np.full(k, pi))
        frame.append(np.arange(k))
        packet.append(np.array([s.packet for s in sc.frames[p.name]], dtype=np.int64))
        rank.append(np.full(k, role_rank[p.role]))
    cols = {n: np.concatenate(v) for n, v in parts.items()}
    return Rows(
        cols,
        np.concatenate(pidx),
        np.concatenate(frame),
        cols["t_ns"],
        np.concatenate(packet),
        np.concatenate(rank),
        [p.name for p in sc.points],
    )


def _covers_of(r: Rows, client_port: int = 53700) -> Covers:
    # One sequence space per direction of the one connection; vantage = point, iface, direction.
    group = (r.cols["sport"] == client_port).astype(np.int64)
    vantage = r.pidx * 1024 + r.cols["iface"] * 4 + r.cols["direction"]
    return find_covers(group, vantage, r.cols["seq"], r.cols["payload_len"], r.cols["ack"], r.t)


# ----------------------------------------------------------------------------- super-segments


def test_tso_super_segment_is_carried_by_the_wire_segments_the_scenario_sent() -> None:
    osc = tso_scenario()
    r = _rows(osc.scenario)
    cv = _covers_of(r)
    found = {
        (r.points[int(r.pidx[s])], int(r.frame[s])): (int(f), int(la), int(n))
        for s, f, la, n in zip(cv.super_row, cv.first, cv.last, cv.count, strict=True)
    }
    assert set(found) == {(s.point, s.frame) for s in osc.supers}
    for sup in osc.supers:
        first, last, count = found[(sup.point, sup.frame)]
        wire = sup.covers["node-a"]
        per_vantage = len(wire) // 2  # node-a sees each segment on the veth and on eth0
        assert count == per_vantage == -(-sup.length // osc.mss)
        assert r.points[int(r.pidx[first])] == "node-a" == r.points[int(r.pidx[last])]
        assert int(r.frame[first]) in wire and int(r.frame[last]) in wire
        # The first row holds the super-segment's first byte, the last its last byte.
        assert int(r.cols["seq"][first]) == sup.seq
        end = int(r.cols["seq"][last]) + int(r.cols["payload_len"][last])
        assert end % 2**32 == (sup.seq + sup.length) % 2**32


def test_the_byte_each_super_segment_stands_for_follows_its_capture_direction() -> None:
    osc = tso_scenario()
    r = _rows(osc.scenario)
    cv = _covers_of(r)
    last = uses_last_byte(r.cols["direction"][cv.super_row], np.zeros(len(cv), np.int64))
    src, target = join_targets(cv, last)
    truth = {(s.point, s.frame): s for s in osc.supers}
    for s, tg in zip(src.tolist(), target.tolist(), strict=True):
        sup = truth[(r.points[int(r.pidx[s])], int(r.frame[s]))]
        # The super-segment joins the wire segment whose time its own time is.
        assert int(r.packet[tg]) == sup.packet
        assert ("last" if r.cols["direction"][s] == DIR_IN else "first") == sup.byte


def test_gro_off_at_the_server_leaves_only_the_senders_super_segment() -> None:
    osc = tso_scenario(gro=1)
    cv = _covers_of(_rows(osc.scenario))
    assert len(cv) == 1 == len(osc.supers)


def test_no_covers_without_offload() -> None:
    assert len(_covers_of(_rows(dnat_scenario()))) == 0


@settings(max_examples=150, deadline=None)
@given(
    base=st.integers(0, 2**32 - 1),
    sizes=st.lists(st.integers(1, 9000), min_size=2, max_size=12),
    ack=st.integers(0, 2**32 - 1),
    retransmit=st.booleans(),
    before=st.integers(0, 5),
)
def test_any_tiling_is_found_across_sequence_wrap(
    base: int, sizes: list[int], ack: int, retransmit: bool, before: int
) -> None:
    # A super-segment at vantage 0 and its pieces at vantage 1, in one sequence space that may
    # wrap past 2^32; earlier traffic of the same space and a retransmitted piece around it.
    seqs, plens, vants, acks = [], [], [], []
    pre = 0
    for _ in range(before):
        for v in (0, 1):
            seqs.append((base + pre) % 2**32)
            plens.append(100)
            vants.append(v)
            acks.append(ack)
        pre += 100
    start = (base + pre) % 2**32
    total = sum(sizes)
    seqs.append(start)
    plens.append(total)
    vants.append(0)
    acks.append(ack)
    off = 0
    first_piece = len(seqs)
    for sz in sizes:
        seqs.append((start + off) % 2**32)
        plens.append(sz)
        vants.append(1)
        acks.append(ack)
        off += sz
    last_piece = len(seqs) - 1
    if retransmit:
        seqs.append(start)
        plens.append(sizes[0])
        vants.append(1)
        acks.append(ack)
    n = len(seqs)
    cv = find_covers(
        np.zeros(n, np.int64),
        np.array(vants, dtype=np.int64),
        np.array(seqs, dtype=np.uint32),
        np.array(plens, dtype=np.int64),
        np.array(acks, dtype=np.uint32),
        np.arange(n, dtype=np.int64),
    )
    assert len(cv) == 1
    assert int(cv.super_row[0]) == before * 2
    assert int(cv.first[0]) == first_piece  # the earliest copy, not the retransmission
    assert int(cv.last[0]) == last_piece
    assert int(cv.count[0]) == len(sizes)


def _one(seqs: list[int], plens: list[int], acks: list[int], vants: list[int]) -> Covers:
    n = len(seqs)
    return find_covers(
        np.zeros(n, np.int64),
        np.array(vants, dtype=np.int64),
        np.array(seqs, dtype=np.int64),
        np.array(plens, dtype=np.int64),
        np.array(acks, dtype=np.int64),
        np.arange(n, dtype=np.int64),
    )


def test_a_gap_a_different_ack_or_another_group_is_no_tiling() -> None:
    assert len(_one([0, 0, 1000], [3000, 1000, 2000], [7, 7, 7], [0, 1, 1])) == 1
    assert len(_one([0, 0, 1200], [3000, 1000, 1800], [7, 7, 7], [0, 1, 1])) == 0  # gap
    assert len(_one([0, 0, 1000], [3000, 1000, 1000], [7, 7, 7], [0, 1, 1])) == 0  # short
    assert len(_one([0, 0, 1000], [3000, 1000, 2000], [7, 7, 8], [0, 1, 1])) == 0  # ack moved
    assert len(_one([0, 0, 1000], [3000, 1000, 2000], [7, 7, 7], [0, 0, 0])) == 0  # own vantage
    assert len(_one([0, 0], [1000, 1000], [7, 7], [0, 1])) == 0  # the same segment: no super
    cv = find_covers(
        np.array([0, 1, 1]),
        np.array([0, 1, 1]),
        np.array([0, 0, 1000]),
        np.array([3000, 1000, 2000]),
        np.array([7, 7, 7]),
        np.arange(3),
    )
    assert len(cv) == 0  # the pieces belong to another connection direction


def test_a_collapsed_retransmission_seen_whole_everywhere_is_no_super_segment() -> None:
    # Row 0 re-sends rows 1 and 2 in one segment; every one of them matched other points.
    args = (
        np.zeros(3, np.int64),
        np.array([0, 1, 1]),
        np.array([0, 0, 1000]),
        np.array([3000, 1000, 2000]),
        np.array([7, 7, 7]),
        np.arange(3),
    )
    assert len(find_covers(*args, np.array([False, False, False]))) == 0
    assert len(find_covers(*args, np.array([False, False, True]))) == 1  # a wire segment alone
    assert len(find_covers(*args, np.array([True, False, False]))) == 1  # the super-segment alone


def test_the_finest_tiling_wins_and_chains_end_on_wire_segments() -> None:
    # Row 0: TSO super-segment (4000 B); rows 1-2: GRO merges at another vantage; rows 3-6 wire.
    seqs = [0, 0, 2000, 0, 1000, 2000, 3000]
    plens = [4000, 2000, 2000, 1000, 1000, 1000, 1000]
    vants = [0, 2, 2, 1, 1, 1, 1]
    cv = _one(seqs, plens, [5] * 7, vants)
    by_super = {
        int(s): (int(f), int(la), int(c))
        for s, f, la, c in zip(cv.super_row, cv.first, cv.last, cv.count, strict=True)
    }
    assert by_super == {0: (3, 6, 4), 1: (3, 4, 2), 2: (5, 6, 2)}
    # A chain through a merge ends on a wire segment.
    chained = Covers(
        np.array([0, 1]), np.array([1, 3]), np.array([2, 4]), np.array([2, 2]), np.array([2, 1])
    )
    src, target = join_targets(chained, np.array([False, False]))
    assert dict(zip(src.tolist(), target.tolist(), strict=True)) == {0: 3, 1: 3}


def test_which_byte_a_super_segment_uses() -> None:
    direction = np.array([DIR_IN, DIR_OUT, DIR_UNKNOWN, DIR_UNKNOWN, DIR_UNKNOWN])
    end = np.array([END_SENDER, END_RECEIVER, END_SENDER, END_MIDDLE, END_RECEIVER])
    assert uses_last_byte(direction, end).tolist() == [True, False, False, False, True]


def test_relative_seq_unwraps_per_group() -> None:
    seq = np.array([2**32 - 10, 5, 100, 2**32 - 20], dtype=np.uint32)
    group = np.array([0, 0, 1, 0])
    rel = relative_seq(seq, group) - 2**31
    assert rel.tolist() == [0, 15, 0, -10]


# ----------------------------------------------------------------------------- repeats


@settings(max_examples=150, deadline=None)
@given(
    seen=st.lists(st.lists(st.booleans(), min_size=3, max_size=3), min_size=2, max_size=4),
    delay=st.integers(0, 5_000_000),
    gap=st.integers(200_000_000, 3_000_000_000),
)
def test_sends_told_apart_by_time_are_paired_again(
    seen: list[list[bool]], delay: int, gap: int
) -> None:
    # Send s leaves the client at s * gap and reaches point p (p = 1, 2) p * delay later; the
    # client sees every send, the other points only some. Rows are paired k-th with k-th per
    # point first, as the engine does before it knows the clocks.
    tc, truth, point = [], [], []
    for s_i, row in enumerate(seen):
        for p, here in enumerate(row):
            if p == 0 or here:
                tc.append(s_i * gap + p * delay)
                truth.append(s_i)
                point.append(p)
    pts = np.array(point)
    tcs = np.array(tc, dtype=np.int64)
    jid = np.zeros(len(tc), dtype=np.int64)
    for p in range(3):
        mine = np.flatnonzero(pts == p)
        jid[mine] = np.arange(mine.shape[0])  # k-th with k-th
    n = len(tc)
    out = regroup_by_time(np.full(n, 99, np.uint64), np.zeros(n, np.int64), tcs, jid, 100_000_000)
    if out is None:
        # Nothing stretched: the k-th pairing was already the truth.
        assert jid.tolist() == truth
        return
    pos, send = out
    label = jid.copy()
    label[pos] = send
    assert label.tolist() == truth


# ----------------------------------------------------------------------------- ISN shifts


def _server_rows_match_client_after(r: Rows, seq: I64, ack: I64) -> bool:
    cp, sp = r.points.index("client"), r.points.index("server")
    for pkt in np.unique(r.packet[r.pidx == sp]).tolist():
        a = np.flatnonzero((r.packet == pkt) & (r.pidx == cp))[0]
        b = np.flatnonzero((r.packet == pkt) & (r.pidx == sp))[0]
        if (int(seq[a]), int(ack[a])) != (int(seq[b]), int(ack[b])):
            return False
    return True


def test_isn_shift_is_learned_from_the_syn_and_undone_on_every_row() -> None:
    fwd, rev = 0x3A5F_0000, 0x0000_1234
    r = _rows(isn_shift_scenario(forward=fwd, reverse=rev))
    assert not _server_rows_match_client_after(r, r.cols["seq"], r.cols["ack"])
    out = learn_isn_shifts(r.cols, r.pidx, r.t, RANK)
    assert out is not None
    (flow,) = out.flows
    assert r.points[flow.point] == "server"
    assert (flow.forward, flow.reverse) == (fwd, rev)
    assert out.rows == int((r.pidx == r.points.index("server")).sum())
    assert _server_rows_match_client_after(r, out.seq.astype(np.int64), out.ack.astype(np.int64))
    # Rows of the other points keep their numbers.
    other = r.pidx != r.points.index("server")
    assert np.array_equal(out.seq[other], r.cols["seq"][other])
    assert np.array_equal(out.ack[other], r.cols["ack"][other])


def test_a_negative_shift_and_mss_clamping() -> None:
    r = _rows(isn_shift_scenario(forward=(-5000) % 2**32, reverse=(-77) % 2**32, mss_clamp=1200))
    out = learn_isn_shifts(r.cols, r.pidx, r.t, RANK)
    assert out is not None
    (flow,) = out.flows
    assert (signed_shift(flow.forward), signed_shift(flow.reverse)) == (-5000, -77)
    assert _server_rows_match_client_after(r, out.seq.astype(np.int64), out.ack.astype(np.int64))


def test_nothing_to_learn_without_a_shift_or_without_entropy() -> None:
    r = _rows(dnat_scenario())
    assert learn_isn_shifts(r.cols, r.pidx, r.t, RANK) is None
    # IPv6 without timestamps: a SYN has no IP ID and no TSval to pair on.
    r6 = _rows(ipv6_retransmit_scenario())
    r6.cols["seq"] = np.where(r6.pidx == 2, r6.cols["seq"] + 1000, r6.cols["seq"])
    assert learn_isn_shifts(r6.cols, r6.pidx, r6.t, RANK) is None


def test_a_syn_ack_that_contradicts_its_syn_is_not_applied() -> None:
    r = _rows(isn_shift_scenario(forward=4000, reverse=0))
    sp = r.points.index("server")
    synack = np.flatnonzero((r.pidx == sp) & (r.cols["tcp_flags"] == 0x12))
    r.cols["ack"] = r.cols["ack"].copy()
    r.cols["ack"][synack] += 1  # no longer the client's ISN + 1 as the server saw it
    out = learn_isn_shifts(r.cols, r.pidx, r.t, RANK)
    assert out is not None and out.inconsistent == 1
    assert out.flows == () and np.array_equal(out.seq, r.cols["seq"])


# ----------------------------------------------------------------------------- end to end


def _journeys(corr: Correlation) -> set[frozenset[tuple[str, int]]]:
    return {
        frozenset((o.point, o.frame) for o in j.observations)
        for c in corr.connections
        for j in c.journeys
    }


def _truth(sc: Scenario) -> set[frozenset[tuple[str, int]]]:
    return {frozenset(p.sightings) for p in sc.packets if p.sightings}


def test_tso_and_gro_connection_path_and_latency() -> None:
    d1, d2, d3 = 15_000, 30_000, 120_000
    osc = tso_scenario(delays_ns=(d1, d2, d3), offsets={"node-b": 3_000_000})
    corr = correlate(osc.scenario.point_frames())
    assert len(corr.connections) == 1
    # Every wire segment is one packet; the client's super-segment joins the first, each GRO
    # merge at the server the last segment it holds.
    assert _journeys(corr) == _truth(osc.scenario)
    conn = corr.connections[0]
    byte = {
        (o.point, o.frame): o.offload for j in conn.journeys for o in j.observations if o.offload
    }
    assert byte == {(s.point, s.frame): f"{s.byte} byte" for s in osc.supers}
    (clock,) = corr.clocks
    assert abs(clock.offset_ns - 3_000_000) <= clock.error_bound_ns
    path = build_path(corr, select(corr))
    seg = {(s.from_point, s.to_point): s for s in path.latency.segments}
    # The super-segment's first byte reached node-a d1 after it left; the last segment of a GRO
    # merge reached the server d3 after node-a forwarded it.
    assert seg[("client", "node-a")].median_ns == d1
    assert abs(seg[("node-a", "server")].median_ns - d3) <= clock.error_bound_ns
    assert any("first byte" in w and "last byte" in w for w in path.warnings)


def test_a_tso_response_and_its_gro_merges_at_the_client() -> None:
    osc = tso_scenario(size=3000, response_size=40_000, gro=4, offsets={"node-b": -2_000_000})
    corr = correlate(osc.scenario.point_frames())
    assert _journeys(corr) == _truth(osc.scenario)
    byte = {
        (o.point, o.frame): o.offload
        for j in corr.connections[0].journeys
        for o in j.observations
        if o.offload
    }
    assert byte == {(s.point, s.frame): f"{s.byte} byte" for s in osc.supers}


def test_a_hop_on_a_super_segment_says_which_byte_its_time_is() -> None:
    osc = tso_scenario()
    corr = correlate(osc.scenario.point_frames())
    notes = [
        offload_note(o)
        for j in corr.connections[0].journeys
        for o in j.observations
        if o.point == "client" and o.offload
    ]
    assert notes == [
        "offload super-segment of 64000 bytes matched by TCP sequence range: the time of its "
        "first byte (captured on transmit, before TSO/GSO cut it)"
    ]


def test_total_length_zero_through_the_reader(tmp_path: Path) -> None:
    osc = tso_scenario(size=30_000, gro=4)
    paths = write_offload_pcaps(osc, tmp_path, total_length_zero=True)
    points = [PointFrames(p, read_frames(paths[p.name])) for p in osc.scenario.points]
    corr = correlate(points)
    assert _journeys(corr) == _truth(osc.scenario)


def test_isn_shifted_connection_is_matched() -> None:
    sc = isn_shift_scenario(forward=0x3A5F_0000, reverse=(-999) % 2**32, mss_clamp=1360)
    corr = correlate(sc.point_frames())
    assert len(corr.connections) == 1
    assert _journeys(corr) == _truth(sc)
    path = build_path(corr, select(corr))
    assert [h.point for h in path.forward] == ["client", "node-a", "node-a", "server"]
    assert str(corr.connections[0].backend) == "10.244.2.9:8080"
    assert any(f"{0x3A5F_0000:+d}" in w and "-999" in w for w in corr.warnings)


def test_ipv6_without_timestamps_keeps_retransmissions_apart() -> None:
    for lost in (False, True):
        sc = ipv6_retransmit_scenario(lost=lost, offsets={"node-b": 5_000_000})
        corr = correlate(sc.point_frames())
        assert len(corr.connections) == 1
        assert _journeys(corr) == _truth(sc), f"lost={lost}"
        data = [j for j in corr.connections[0].journeys if j.kind == "data"]
        fwd = [j for j in data if j.direction == "forward"]
        assert [j.retransmission for j in fwd] == [0, 1]

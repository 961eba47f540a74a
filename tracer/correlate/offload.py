"""Offloads and sequence rewrites: match what the exact packet key cannot.

Pure passes over numpy columns, for the correlation engine (reference/correlation.md sections
0 step 4, 1.1 and 1.3):

- `find_covers`: a GSO/TSO super-segment (seen on the sender before the NIC cuts it), a GRO
  merge (seen on the receiver after the stack glued segments back) or a BIG TCP packet has no
  exact twin at other points; its bytes travel as several MSS-sized segments. Within one mapped
  connection and direction, a row whose `[seq, seq + len)` is tiled exactly by two or more rows
  of another vantage (a point, interface and capture direction) is a super-segment of those
  rows. TSO copies the ack and the TCP options into every segment and GRO merges only segments
  with the same ack and options, so the tiling rows must carry the super-segment's ack.
- `learn_isn_shifts`: a firewall that randomises initial sequence numbers (Cisco ASA does by
  default) adds a constant per connection and direction to seq, and the matching constant to
  the peer's ack. SYNs and SYN-ACKs that agree on everything but seq/ack (TCP timestamps, IPv4
  ID, length) give the constants; every row of the shifted flow is brought back to the
  numbering of the point nearest the client, so the exact key matches again. (MSS clamping,
  which rewrites the SYN's MSS option, needs nothing: no key includes the option.)
- `regroup_by_time`: sends of one segment that nothing but time tells apart (IPv6 without TCP
  timestamps has no IP ID and no TSval) are paired again on clock-corrected time where the
  k-th with k-th pairing stretched one packet over two sends (a copy lost before one point).

Which byte's time a super-segment stands for (`uses_last_byte`): a super-segment captured on
transmit is stamped before segmentation, when its first byte leaves first; one captured on
receive is a GRO merge, complete only when its last segment arrived.

This module does no I/O, builds no model objects and never decides connections: the engine
passes rows it has already grouped.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from tracer.correlate.keys import mix, seed
from tracer.pcap.columns import DIR_IN, DIR_OUT, OPT_TS, TH_ACK, TH_SYN

I64 = npt.NDArray[np.int64]
Bools = npt.NDArray[np.bool_]
Col = npt.NDArray[Any]

SEQ_MOD = 1 << 32
_HALF = 1 << 31

# Where a row sits on its packet's way: at the sending end, in the middle, at the receiving end.
END_SENDER = -1
END_MIDDLE = 0
END_RECEIVER = 1


# ----------------------------------------------------------------------------- sequence space


def relative_seq(seq: Col, group: I64) -> I64:
    """Each row's seq as an offset from its group's first row, unwrapped (RFC 9293 arithmetic).

    A connection direction spans less than 2^31 bytes of sequence space in any capture worth
    matching, so the difference modulo 2^32 read as a signed 32-bit value is exact. Offsets are
    returned shifted by 2^31 so they are never negative.
    """
    n = int(group.shape[0])
    if n == 0:
        return np.zeros(0, np.int64)
    s = np.asarray(seq).astype(np.int64) & (SEQ_MOD - 1)
    first = np.full(int(group.max()) + 1, -1, dtype=np.int64)
    # The first row of each group: assign in reverse so the earliest index wins.
    first[group[::-1]] = np.arange(n - 1, -1, -1, dtype=np.int64)
    base = s[first[group]]
    return ((s - base + _HALF) & (SEQ_MOD - 1)).astype(np.int64)


# ----------------------------------------------------------------------------- super-segments


@dataclass(frozen=True)
class Covers:
    """Super-segments and the rows that carry their bytes (indices into the caller's rows).

    For super-segment i: `first[i]`/`last[i]` hold its first/last byte, `count[i]` rows of one
    other vantage (`vantage[i]`) tile its range exactly.
    """

    super_row: I64
    first: I64
    last: I64
    count: I64
    vantage: I64

    def __len__(self) -> int:
        return int(self.super_row.shape[0])


def _empty_covers() -> Covers:
    z = np.zeros(0, np.int64)
    return Covers(z, z, z, z, z)


def find_covers(
    group: I64,
    vantage: I64,
    seq: Col,
    plen: Col,
    ack: Col,
    t: I64,
    lone: Bools | None = None,
) -> Covers:
    """Rows whose byte range other rows of one other vantage tile exactly (super-segments).

    `group` is one id per connection direction (one sequence space); `vantage` one id per place
    a packet can be seen (point, interface, direction). Only rows with payload take part. A
    retransmission repeats a range: per vantage only the earliest copy of a range counts. Where
    several vantages tile a row, the one with the most (finest) rows wins, so a sender's TSO
    super-segment maps to wire segments rather than to the receiver's GRO merges.

    With `lone` (rows no other point matched exactly), a tiling counts only where the
    super-segment or one of the tiling rows is lone: a retransmission that collapses two
    segments into one (tcp_retrans_try_collapse) was seen whole everywhere it went, and its
    originals too; it is a retransmission, not a super-segment.
    """
    g_all = np.asarray(group, dtype=np.int64)
    pl_all = np.asarray(plen).astype(np.int64)
    rows = np.flatnonzero(pl_all > 0)
    if rows.shape[0] < 3:
        return _empty_covers()
    g = g_all[rows]
    v = np.asarray(vantage, dtype=np.int64)[rows]
    pl = pl_all[rows]
    ak = np.asarray(ack).astype(np.int64)[rows]
    ln = np.ones(rows.shape[0], dtype=bool) if lone is None else np.asarray(lone)[rows]
    tt = np.asarray(t, dtype=np.int64)[rows]
    start = relative_seq(np.asarray(seq)[rows], g)
    end = start + pl

    # (group, vantage) cells, densely numbered.
    _, gv = np.unique(g * (int(v.max()) + 1) + v, return_inverse=True)
    gv = gv.astype(np.int64)
    # Sort by (cell, start, end, time); keep the earliest copy of each (cell, start, end).
    order = np.lexsort((tt, end, start, gv))
    o_gv, o_start, o_end = gv[order], start[order], end[order]
    keep = np.ones(order.shape[0], dtype=bool)
    keep[1:] = (o_gv[1:] != o_gv[:-1]) | (o_start[1:] != o_start[:-1]) | (o_end[1:] != o_end[:-1])
    order = order[keep]
    o_gv, o_start, o_end = gv[order], start[order], end[order]
    o_ack = ak[order]
    m = int(order.shape[0])
    skey = (o_gv << 33) | o_start
    # Prefix counts over the sorted rows: gaps/overlaps between neighbours, ack changes.
    same_cell = np.zeros(m, dtype=bool)
    same_cell[1:] = o_gv[1:] == o_gv[:-1]
    brk = np.zeros(m, dtype=np.int64)
    brk[1:] = (same_cell[1:] & (o_start[1:] != o_end[:-1])).astype(np.int64)
    ack_chg = np.zeros(m, dtype=np.int64)
    ack_chg[1:] = (same_cell[1:] & (o_ack[1:] != o_ack[:-1])).astype(np.int64)
    c_brk = np.cumsum(brk)
    c_ack = np.cumsum(ack_chg)
    c_lone = np.r_[0, np.cumsum(ln[order])]  # lone rows among sorted rows [0, i)

    # Candidate (super row, other cell of its group) pairs.
    cell_group = np.zeros(int(gv.max()) + 1, dtype=np.int64)
    cell_group[gv] = g
    cell_vant = np.zeros_like(cell_group)
    cell_vant[gv] = v
    cells_by_group = np.argsort(cell_group, kind="stable")
    cg_sorted = cell_group[cells_by_group]
    lo_c = np.searchsorted(cg_sorted, g, side="left")
    hi_c = np.searchsorted(cg_sorted, g, side="right")
    per = hi_c - lo_c
    s_idx = np.repeat(np.arange(rows.shape[0]), per)
    pos = np.arange(int(per.sum())) - np.repeat(np.cumsum(per) - per, per)
    cell = cells_by_group[np.repeat(lo_c, per) + pos]
    other = cell_vant[cell] != v[s_idx]
    s_idx, cell = s_idx[other], cell[other]
    if s_idx.shape[0] == 0:
        return _empty_covers()
    lo = np.searchsorted(skey, (cell << 33) | start[s_idx], side="left")
    hi = np.searchsorted(skey, (cell << 33) | end[s_idx], side="left")
    count = hi - lo
    ok = count >= 2
    lo_s = np.minimum(lo, m - 1)
    last_s = np.clip(hi - 1, 0, m - 1)
    ok &= o_start[lo_s] == start[s_idx]
    ok &= o_end[last_s] == end[s_idx]
    ok &= (c_brk[last_s] - c_brk[lo_s]) == 0  # contiguous: each starts where the previous ends
    ok &= (c_ack[last_s] - c_ack[lo_s]) == 0
    ok &= o_ack[lo_s] == ak[s_idx]
    ok &= ln[s_idx] | ((c_lone[last_s + 1] - c_lone[lo_s]) > 0)
    if not ok.any():
        return _empty_covers()
    s_idx, lo, last, count, cell = s_idx[ok], lo_s[ok], last_s[ok], count[ok], cell[ok]
    # One tiling per super-segment: the finest (most rows), then the lowest vantage id.
    pick = np.lexsort((cell_vant[cell], -count, s_idx))
    s_sorted = s_idx[pick]
    head = np.ones(pick.shape[0], dtype=bool)
    head[1:] = s_sorted[1:] != s_sorted[:-1]
    pick = pick[head]
    return Covers(
        super_row=rows[s_idx[pick]],
        first=rows[order[lo[pick]]],
        last=rows[order[last[pick]]],
        count=count[pick].astype(np.int64),
        vantage=cell_vant[cell[pick]],
    )


def uses_last_byte(direction: Col, end: Col) -> Bools:
    """Per super-segment: True where its time is that of its last byte, else its first byte.

    Captured on receive (DIR_IN): a GRO merge, stamped when its last segment arrived. Captured
    on transmit (DIR_OUT): a GSO/TSO super-segment, stamped before the NIC or the stack cut it,
    so its first byte is the one that leaves at that time. Without a capture direction, the
    receiving end of the packet's way means GRO; the sending end and the middle mean GSO/TSO.
    """
    d = np.asarray(direction).astype(np.int64)
    e = np.asarray(end).astype(np.int64)
    return (d == DIR_IN) | ((d != DIR_OUT) & (e == END_RECEIVER))


def join_targets(covers: Covers, last_byte: Bools) -> tuple[I64, I64]:
    """(super row, row whose packet it joins): the row holding the byte its time stands for.

    A target that is itself a super-segment is followed to its own target, so a chain (a TSO
    super-segment tiled by GRO merges tiled by wire segments) ends on a wire segment.
    """
    target = np.where(np.asarray(last_byte, dtype=bool), covers.last, covers.first)
    src = covers.super_row
    if src.shape[0] == 0:
        return src, target
    order = np.argsort(src)
    s_sorted = src[order]
    for _ in range(8):
        at = np.searchsorted(s_sorted, target)
        at_c = np.minimum(at, s_sorted.shape[0] - 1)
        chained = s_sorted[at_c] == target
        chained &= target != src
        if not chained.any():
            break
        target = np.where(chained, target[order][at_c], target)
    return src, target


@dataclass(frozen=True)
class SuperJoins:
    """Super-segment rows, the rows whose packets they join, and which byte's time they use."""

    rows: I64
    targets: I64
    last_byte: Bools

    def __len__(self) -> int:
        return int(self.rows.shape[0])


def super_segment_joins(
    lone: I64,
    conn: I64,
    forward: Bools,
    pidx: I64,
    point_rank: I64,
    cols: Mapping[str, Col],
    t: I64,
) -> SuperJoins | None:
    """Within the connections of `lone` TCP data rows (rows no other point matched exactly),
    find super-segments and the packet each one joins.

    `conn` and `forward` (per row) are the engine's connection label and orientation;
    `point_rank[p]` orders points from the client (0) to the server (highest). Vantages are
    (point, interface, capture direction): a node's `-i any` capture can see the super-segment
    on one interface and the wire segments on another.
    """
    proto = np.asarray(cols["proto"])
    plen_all = np.asarray(cols["payload_len"])
    data = lone[(proto[lone] == 6) & (plen_all[lone] > 0)]
    if data.shape[0] == 0:
        return None
    rows = np.flatnonzero(np.isin(conn, np.unique(conn[data])) & (proto == 6) & (plen_all > 0))
    fwd = np.asarray(forward, dtype=bool)[rows]
    group = conn[rows] * 2 + fwd
    iface = _u(cols["iface"])[rows]
    direction = _u(cols["direction"])[rows]
    vantage = (pidx[rows] << 24) | ((iface + 1) << 2) | (direction & 3)
    is_lone = np.zeros(rows.shape[0], dtype=bool)
    is_lone[np.searchsorted(rows, lone[np.isin(lone, rows)])] = True
    cov = find_covers(
        group,
        vantage,
        np.asarray(cols["seq"])[rows],
        plen_all[rows],
        np.asarray(cols["ack"])[rows],
        t[rows],
        is_lone,
    )
    if len(cov) == 0:
        return None
    sup = cov.super_row
    prank = np.asarray(point_rank, dtype=np.int64)
    r = prank[pidx[rows[sup]]]
    # Ends of the way in the packet's own direction: a reply starts at the server.
    at_client = r == prank.min()
    at_server = r == prank.max()
    sender = np.where(fwd[sup], at_client, at_server)
    receiver = np.where(fwd[sup], at_server, at_client)
    end = np.where(sender, END_SENDER, np.where(receiver, END_RECEIVER, END_MIDDLE))
    last = uses_last_byte(direction[sup], end)
    src, target = join_targets(cov, last)
    return SuperJoins(rows[src], rows[target], last)


# ----------------------------------------------------------------------------- repeats


def regroup_by_time(
    key: npt.NDArray[Any], conn: I64, tc: I64, jid: I64, window_ns: int
) -> tuple[I64, I64] | None:
    """Sends of one segment that only time tells apart, paired again on corrected time.

    Rows whose key repeats (no IP ID and no TSval: IPv6 without timestamps) were paired k-th
    with k-th per point. Where a copy was lost before some point, that pairs its first copy
    with the other points' first, which is the wrong send. Once the clocks are known, a
    packet whose sightings spread over more than `window_ns` of corrected time is such a
    pair: the rows of its key (in its connection) are split again where corrected time jumps
    by more than `window_ns`.

    Arguments are per row of the repeating keys only. Returns (positions into those rows,
    new send label) for the rows regrouped, or None when every pairing held.
    """
    n = int(key.shape[0])
    if n < 2:
        return None
    k = np.asarray(key).view(np.int64) if np.asarray(key).dtype == np.uint64 else key
    by_j = np.lexsort((tc, jid))
    js, ts = jid[by_j], tc[by_j]
    starts = np.flatnonzero(np.r_[True, js[1:] != js[:-1]])
    span = np.maximum.reduceat(ts, starts) - np.minimum.reduceat(ts, starts)
    bad = np.zeros(n, dtype=bool)
    bad[by_j] = np.repeat(span > window_ns, np.diff(np.r_[starts, n]))
    if not bad.any():
        return None
    # Every row of a (connection, key) that holds a stretched packet is paired again.
    gk = mix(mix(seed(n, 0x7E5), conn), k).view(np.int64)
    sel = np.flatnonzero(np.isin(gk, gk[bad]))
    o = sel[np.lexsort((tc[sel], gk[sel]))]
    g, t = gk[o], tc[o]
    new = np.ones(o.shape[0], dtype=bool)
    new[1:] = (g[1:] != g[:-1]) | ((t[1:] - t[:-1]) > window_ns)
    return o, np.cumsum(new) - 1


# ----------------------------------------------------------------------------- ISN shifts


@dataclass(frozen=True)
class FlowShift:
    """One flow (a tuple at a point) whose sequence numbers a middlebox shifted.

    `forward`/`reverse` are the constants added to the client's and to the server's sequence
    space at this point relative to the reference point (the one nearest the client); `row` is
    the SYN (or SYN-ACK) they were learned from.
    """

    point: int
    row: int
    forward: int
    reverse: int


@dataclass(frozen=True)
class SeqShifts:
    """Corrected seq/ack columns (every row; unshifted rows unchanged) and what was shifted."""

    seq: npt.NDArray[np.uint32]
    ack: npt.NDArray[np.uint32]
    flows: tuple[FlowShift, ...]
    rows: int  # how many rows were corrected
    inconsistent: int = 0  # SYN-ACKs whose ack disagreed with their SYN's shift (left alone)


def _u(col: Col) -> I64:
    return np.asarray(col).astype(np.int64)


def learn_isn_shifts(
    cols: Mapping[str, Col], pidx: I64, t: I64, point_rank: I64
) -> SeqShifts | None:
    """Learn per-flow sequence shifts from SYNs/SYN-ACKs and correct every row of those flows.

    `cols` holds the frame columns of all rows (seq, ack, tcp_flags, tsval, tsecr, opts, ip_id,
    payload_len, phash, src, dst, sport, dport, proto); `pidx` each row's point, `t` its time
    (point clock) and `point_rank[p]` point p's place on the way (lower = nearer the client).
    Returns None when no SYN needs it.

    SYNs (or SYN-ACKs) at different points are the same packet when they agree on flags,
    length, payload hash, TSval/TSecr and the IPv4 ID; where they disagree on seq, the point
    nearest the client gives the reference numbering. A SYN without the timestamps option and
    without an IPv4 ID (IPv6) carries too little to pair on and is never shifted.
    """
    flags_all = np.asarray(cols["tcp_flags"])
    r = np.flatnonzero((flags_all & TH_SYN) != 0)
    r = r[np.asarray(cols["proto"])[r] == 6]
    if r.shape[0] < 2:
        return None
    has_ts = (_u(cols["opts"])[r] & OPT_TS) != 0
    ip_id = _u(cols["ip_id"])[r]
    strong = has_ts | (ip_id > 0)
    r, has_ts, ip_id = r[strong], has_ts[strong], ip_id[strong]
    if r.shape[0] < 2:
        return None
    flags_r = _u(flags_all)[r] & (TH_SYN | TH_ACK)
    # Everything but seq and ack (and the MSS option, which clamping rewrites).
    zero = np.zeros(r.shape[0], dtype=np.int64)
    loose = mix(seed(r.shape[0], 0x5EC), flags_r | (has_ts.astype(np.int64) << 8))
    loose = mix(loose, (ip_id + 1) | (_u(cols["payload_len"])[r] << 20))
    tsv = np.where(has_ts, _u(cols["tsval"])[r], zero)
    tse = np.where(has_ts, _u(cols["tsecr"])[r], zero)
    loose = mix(mix(loose, (tsv << 32) | tse), _u(cols["phash"])[r])
    # Rows come in (point, time) order: a stable sort on the key alone keeps that within a group.
    order = np.argsort(loose, kind="stable")
    r, lk = r[order], loose[order]
    new = np.ones(r.shape[0], dtype=bool)
    new[1:] = lk[1:] != lk[:-1]
    starts = np.flatnonzero(new)
    sizes = np.diff(np.r_[starts, r.shape[0]])
    # Only groups whose seq or ack differ between their rows need a shift.
    seq_r = _u(cols["seq"])[r]
    ack_r = _u(cols["ack"])[r]
    smin = np.minimum.reduceat(seq_r, starts)
    smax = np.maximum.reduceat(seq_r, starts)
    amin = np.minimum.reduceat(ack_r, starts)
    amax = np.maximum.reduceat(ack_r, starts)
    cand = (sizes >= 2) & ((smin != smax) | (amin != amax))
    if not cand.any():
        return None
    seq = _u(cols["seq"])
    ack = _u(cols["ack"])
    flags = _u(flags_all)
    proto = _u(cols["proto"])
    prank = np.asarray(point_rank, dtype=np.int64)
    src, dst = _u(cols["src"]), _u(cols["dst"])
    sport, dport = _u(cols["sport"]), _u(cols["dport"])
    shifts: list[tuple[int, int, bool, int, int]] = []  # point, row, is_synack, off, ack_off
    for gi in np.flatnonzero(cand).tolist():
        members = r[starts[gi] : starts[gi] + sizes[gi]]
        pts = pidx[members]
        if np.unique(pts).shape[0] == 1:
            continue
        if np.unique(pts * SEQ_MOD + seq[members]).shape[0] != np.unique(pts).shape[0]:
            # One point shows two seq values with the same timestamps: two different connections
            # (or a retry with a fresh ISN); nothing safe to learn.
            continue
        ref = members[np.lexsort((t[members], pidx[members], prank[pidx[members]]))[0]]
        for m in members.tolist():
            off = (int(seq[m]) - int(seq[ref])) % SEQ_MOD
            ack_off = (int(ack[m]) - int(ack[ref])) % SEQ_MOD
            if off or ack_off:
                synack = bool(flags[m] & TH_ACK)
                shifts.append((int(pidx[m]), m, synack, off, ack_off))
    if not shifts:
        return None
    # Per flow at a point: the forward shift from its SYN, the reverse one from its SYN-ACK.
    flows: dict[tuple[int, int, int, int, int], dict[str, int]] = {}
    inconsistent = 0
    for p, m, synack, off, ack_off in shifts:
        client = (int(dst[m]), int(dport[m])) if synack else (int(src[m]), int(sport[m]))
        server = (int(src[m]), int(sport[m])) if synack else (int(dst[m]), int(dport[m]))
        key = (p, *client, *server)
        f = flows.setdefault(key, {"row": m, "t": int(t[m])})
        f["t"] = min(f["t"], int(t[m]))
        if synack:
            f["reverse"] = off
            f["synack_ack"] = ack_off
        else:
            f["forward"] = off
    for f in flows.values():
        if "synack_ack" in f and f.get("forward", 0) != f["synack_ack"]:
            # The SYN-ACK acknowledges the client's ISN as this point saw it: its ack must be
            # off by the SYN's shift. Where it is not, the pairing was wrong.
            inconsistent += 1
            f["reverse"] = 0
            f["forward"] = 0
        elif "synack_ack" in f and "forward" not in f:
            f["forward"] = f["synack_ack"]
    flows = {k: f for k, f in flows.items() if f.get("forward", 0) or f.get("reverse", 0)}
    if not flows:
        if inconsistent:
            return SeqShifts(seq.astype(np.uint32), ack.astype(np.uint32), (), 0, inconsistent)
        return None
    # Apply to every row of each shifted flow (same point, same two endpoints, from its SYN on).
    items = list(flows.items())
    fk = np.array([k for k, _ in items], dtype=np.int64).reshape(-1, 5)
    f_fwd = _directed(fk[:, 0], fk[:, 1], fk[:, 2], fk[:, 3], fk[:, 4])
    f_rev = _directed(fk[:, 0], fk[:, 3], fk[:, 4], fk[:, 1], fk[:, 2])
    f_t = np.array([f["t"] for _, f in items], dtype=np.int64)
    f_off = np.array([f.get("forward", 0) for _, f in items], dtype=np.int64)
    r_off = np.array([f.get("reverse", 0) for _, f in items], dtype=np.int64)
    # A row's directed tuple finds its flow either as the forward or as the reverse tuple.
    table = np.concatenate([f_fwd, f_rev])
    t_order = np.argsort(table, kind="stable")
    t_sorted = table[t_order]
    tcp_rows = np.flatnonzero(proto == 6)
    rk = _directed(pidx[tcp_rows], src[tcp_rows], sport[tcp_rows], dst[tcp_rows], dport[tcp_rows])
    at = np.minimum(np.searchsorted(t_sorted, rk), t_sorted.shape[0] - 1)
    hit = t_sorted[at] == rk
    slot = t_order[at]
    flow = slot % len(items)
    forward = slot < len(items)
    hit &= t[tcp_rows] >= f_t[flow]
    rows_hit, flow, forward = tcp_rows[hit], flow[hit], forward[hit]
    own = np.where(forward, f_off[flow], r_off[flow])  # shift of this row's own seq space
    peer = np.where(forward, r_off[flow], f_off[flow])  # shift of the space its ack points in
    out_seq = seq.copy()
    out_ack = ack.copy()
    out_seq[rows_hit] = (seq[rows_hit] - own) % SEQ_MOD
    with_ack = (flags[rows_hit] & TH_ACK) != 0
    out_ack[rows_hit] = np.where(with_ack, (ack[rows_hit] - peer) % SEQ_MOD, ack[rows_hit])
    corrected = int(rows_hit.shape[0])
    shifted = tuple(
        FlowShift(k[0], f["row"], f.get("forward", 0), f.get("reverse", 0))
        for k, f in flows.items()
    )
    return SeqShifts(
        seq=out_seq.astype(np.uint32),
        ack=out_ack.astype(np.uint32),
        flows=shifted,
        rows=corrected,
        inconsistent=inconsistent,
    )


def _directed(p: I64, a: I64, ap: I64, b: I64, bp: I64) -> I64:
    """A 64-bit hash of a directed tuple at a point (address ids and ports)."""
    h = mix(mix(mix(seed(int(p.shape[0]), 0x15A), p), (a << 18) | (ap + 1)), (b << 18) | (bp + 1))
    return h.view(np.int64)


def signed_shift(value: int) -> int:
    """A shift modulo 2^32 as the signed amount a person would read (-2^31 .. 2^31-1)."""
    v = value % SEQ_MOD
    return v - SEQ_MOD if v >= _HALF else v

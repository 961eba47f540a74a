"""The correlation engine: group every frame of every point into packets and connections.

`correlate` runs one function per phase (vectorised: numpy and the compiled kernels of
`kernels`; no Python loop per packet):
1. gather the IP rows of every point, sorted by time within the point (`gather`);
2. key each row on its NAT-invariant signature refined by the IPv4 ID, and split rows with equal
   keys into sends: at one point, sightings of one send are close in time, a later send of the
   same bytes is a retransmission; the k-th send at one point pairs with the k-th at another;
3. learn connections from flows (`connections`);
4. orient packets (forward = client to server), estimate clock offsets, order each packet's
   sightings in path order and each connection's packets by corrected time (`Table`).
Rows no other point matched exactly get a second look (`tracer.correlate.offload`): shifted
sequence numbers, offload super-segments, and sends only time tells apart. Memory is the other
budget: each phase drops the working arrays no later phase reads (the state they hand on,
`Packets`, is emptied field by field) and the heap is trimmed between the big stages.
This module reads no files and prints nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from tracer.correlate import clocks as clk
from tracer.correlate import kernels
from tracer.correlate.connections import (
    connect,
    distinct_count,
    journey_forward,
    orient,
    retransmissions,
    row_flows,
)
from tracer.correlate.correlation import Correlation
from tracer.correlate.gather import KEEP, Rows, gather
from tracer.correlate.icmp import drop_stray_icmp, icmp_error_rows
from tracer.correlate.kernels import packed_order
from tracer.correlate.keys import partial_hash
from tracer.correlate.offload import learn_isn_shifts, regroup_by_time, super_segment_joins
from tracer.correlate.scope import link_scope_rows, scoped_keys
from tracer.correlate.state import NO_BOOLS, NO_ROWS, Domains, Packets, domains
from tracer.correlate.table import I64, Bools, PointFrames, Table
from tracer.correlate.warnings import (
    match_warnings,
    negative_delay_warnings,
    offload_warnings,
    shift_warnings,
)
from tracer.errors import InputError
from tracer.memory import give_back
from tracer.pcap.columns import TH_SYN

# Sightings of one send at one point are this close; a retransmission comes later (Linux's
# minimum RTO is 200 ms, a tail-loss probe at least 10 ms, and each gets a new IP ID and TSval).
SAME_SEND_WINDOW_NS = 10_000_000
# Sends of one segment that nothing but time tells apart are paired again on corrected time
# where one packet's sightings spread wider than this: an RTO is at least 200 ms (Linux's
# TCP_RTO_MIN), a DNS retry seconds, while one packet crosses a cluster in far less.
RESEND_GAP_NS = 100_000_000


def correlate(points: Sequence[PointFrames]) -> Correlation:
    """Match the same packets across points and group them into connections."""
    names = [pf.point.name for pf in points]
    if len(set(names)) != len(names):
        raise InputError(f"capture point names repeat: {', '.join(names)}")
    warnings: list[str] = []
    notes: list[str] = []
    rows = drop_stray_icmp(gather(points, warnings, notes), points, warnings)
    doms = domains(points)
    pk = _sends(rows, points, doms, warnings)
    fl = row_flows(rows, doms, pk)
    connect(rows, pk, fl, warnings)
    orient(rows, pk, fl)
    del fl  # flows have done their part (connections and orientation)
    rows.t = rows.cols["t_ns"].astype(np.int64, copy=False)  # read again from here to the clocks
    offload_byte = _offloaded(rows, points, doms, pk, warnings)
    solution = _clocks(rows, points, doms, pk, warnings)
    _pair_by_time(pk, warnings)
    cpoints = _points_seen(rows, points, pk, warnings)
    table = _table(rows, doms, pk, _path_order(pk), offload_byte, cpoints, warnings)
    return _correlation(points, doms, solution, table, warnings, notes)


# ----------------------------------------------------------------------------- 2. sends


def _sends(
    rows: Rows, points: Sequence[PointFrames], doms: Domains, warnings: list[str]
) -> Packets:
    """Key every row and split equal keys into sends; where a SYN matched no other point, learn
    a middlebox's sequence shift, undo it and key again."""
    cols = rows.cols
    partial = cols.derived(
        lambda c: partial_hash(c["payload_len"], c["pcap_len"]) & (np.asarray(c["proto"]) == 6),
        replaced=("payload_len", "pcap_len", "proto"),
    )
    tcp_phash = not bool(partial.any())
    del partial
    # Link-scope chatter (RS/NS/MLD, IGMP, ...) repeats the same bytes on every node: it is
    # matched within its node only.
    scoped = link_scope_rows(
        rows.addresses, cols["src"], cols["dst"], cols["proto"], cols["icmp_type"]
    )
    if not tcp_phash:
        warnings.append(
            "some TCP payloads were captured too short for the payload hash (small snaplen): "
            "TCP segments are matched on seq/ack/flags/length/timestamps only"
        )
    pk = _key_sends(rows, scoped, doms, tcp_phash)
    give_back()  # the sort's temporaries are freed: the flow stage reuses their pages
    if pk.lone.shape[0] and ((cols["tcp_flags"][pk.lone] & TH_SYN) != 0).any():
        # A SYN no other point saw exactly: a firewall may have shifted the sequence numbers.
        shifts = learn_isn_shifts(cols, rows.pidx.astype(np.int64), rows.t, doms.rank)
        if shifts is not None:
            shift_warnings(shifts, points, cols, rows.addresses, warnings)
            if shifts.flows:
                cols["seq"], cols["ack"] = shifts.seq, shifts.ack
                pk = _key_sends(rows, scoped, doms, tcp_phash)
    return pk


def _key_sends(rows: Rows, scoped: Bools, doms: Domains, tcp_phash: bool) -> Packets:
    cols = rows.cols
    n = int(rows.pidx.shape[0])
    key = cols.derived(
        lambda c: kernels.packet_key(c["proto"], c, tcp_phash=tcp_phash),
        replaced=("seq", "ack"),
    )
    key = scoped_keys(key, scoped, doms.of_point[rows.pidx])
    # Rows are concatenated point by point, each in time order: ordering by (key, row) gives
    # (key, point, time).
    order, s_key = packed_order(key, with_sorted=True)
    del key
    kid = np.empty(n, dtype=np.int64)
    kid[order] = np.cumsum(np.r_[False, s_key[1:] != s_key[:-1]]) if n else kid
    n_kid = int(kid.max()) + 1 if n else 0
    jid, n_j0, jambiguous, lone_row, rep = kernels.sends(
        order,
        s_key,
        rows.pidx,
        rows.t,
        cols["iface"],
        cols["direction"],
        SAME_SEND_WINDOW_NS,
    )
    # Journeys numbered in the order rows first show them (see kernels.first_seen).
    jid, new_of = kernels.first_seen(jid, n_j0)
    amb = np.empty(n_j0, dtype=bool)
    amb[new_of] = jambiguous
    jambiguous = amb
    del new_of, amb
    lone = np.flatnonzero(lone_row)
    pos = np.flatnonzero(rep)
    repeats, repeat_key = order[pos], s_key[pos]
    del order, s_key, rep, pos, lone_row
    return Packets(jid, n_j0, jambiguous, lone, repeats, repeat_key, kid, n_kid)


# ------------------------------------------------------------------ 4. clocks and path order


def _offloaded(
    rows: Rows,
    points: Sequence[PointFrames],
    doms: Domains,
    pk: Packets,
    warnings: list[str],
) -> npt.NDArray[np.int8] | None:
    """Offload super-segments joined to their wire segments by sequence range: per row 0, or
    1/2 for one whose time is that of its first/last byte (None when no row is one)."""
    lone, pk.lone = pk.lone, NO_ROWS
    if not lone.shape[0]:
        return None
    offload_byte: npt.NDArray[np.int8] | None = None
    joins = super_segment_joins(
        lone, pk.conn, pk.is_fwd, rows.pidx.astype(np.int64), doms.rank, rows.cols, rows.t
    )
    if joins is not None:
        pk.jid = pk.jid.copy()
        pk.jid[joins.rows] = pk.jid[joins.targets]
        pk.jid, pk.n_j = kernels.dense(pk.jid)
        pk.jfwd = journey_forward(pk.jid, pk.n_j, pk.is_fwd)
        offload_byte = np.zeros(rows.pidx.shape[0], dtype=np.int8)
        offload_byte[joins.rows] = np.where(joins.last_byte, 2, 1)
    offload_warnings(joins, lone, points, rows.cols, rows.pidx, warnings)
    return offload_byte


def _clocks(
    rows: Rows,
    points: Sequence[PointFrames],
    doms: Domains,
    pk: Packets,
    warnings: list[str],
) -> clk.ClockSolution:
    """Clock offsets between domains from the packets seen in more than one, and every row's
    corrected time (`pk.tc`); also each row's end rank, for the path order."""
    n = int(rows.pidx.shape[0])
    rank_of_point = doms.rank.astype(np.int8)
    # An ICMP error travels back to the sender of the packet it quotes: towards the client.
    max_rank = int(rank_of_point.max())
    rank = rank_of_point[rows.pidx]
    rank = np.where(
        icmp_error_rows(rows.cols["proto"], rows.cols["icmp_type"]), max_rank - rank, rank
    )
    ref = _reference_domain(points, doms.names)
    dom = doms.of_point[rows.pidx]
    n_j, n_c, n_dom = pk.n_j, pk.n_c, doms.n
    pk.jconn = np.zeros(n_j, dtype=np.int64)
    pk.jconn[pk.jid] = pk.conn
    solution = clk.solve(doms.names or ["-"], ref, [])
    if n and len(doms.names) > 1:
        cell = pk.jid * n_dom + dom
        tmin = kernels.group_min(cell, rows.t, n_j * n_dom)
        tmax = kernels.group_max(cell, rows.t, n_j * n_dom)
        present = (tmax != np.iinfo(np.int64).min).reshape(n_j, n_dom)
        present &= (kernels.group_max(pk.jid, pk.noclock, n_j) <= 0)[:, None]
        crank = np.minimum(kernels.group_min(pk.conn * n_dom + dom, rank, n_c * n_dom), 99)
        pairs = clk.pair_bounds(
            tmin.reshape(n_j, n_dom),
            tmax.reshape(n_j, n_dom),
            present,
            pk.jfwd,
            pk.jconn,
            crank.reshape(n_c, n_dom),
            n_c,
        )
        del cell, tmin, tmax, present, crank
        solution = clk.solve(doms.names, ref, pairs)
    pk.noclock = NO_BOOLS
    warnings.extend(solution.warnings)
    tc = rows.t - _domain_offsets(solution)[dom]
    for d, model in enumerate(solution.models):
        if model is not None:
            here = dom == d
            tc[here] = model.correct(rows.t[here])
    # No later step reads the capture times or the clock domains of rows.
    rows.t = np.zeros(0, np.int64)
    del dom
    pk.tc, pk.rank, pk.max_rank = tc, rank, max_rank
    return solution


def _domain_offsets(solution: clk.ClockSolution) -> I64:
    return np.array(solution.offsets or (0,), dtype=np.int64)


def _reference_domain(points: Sequence[PointFrames], dom_names: list[str]) -> int:
    for role in ("client", "external"):
        for pf in points:
            if pf.point.role == role:
                name = pf.point.node if pf.point.node is not None else pf.point.name
                return dom_names.index(name)
    return 0


def _pair_by_time(pk: Packets, warnings: list[str]) -> None:
    """Sends told apart only by time, paired again on corrected time where a copy was missing."""
    repeats, pk.repeats = pk.repeats, NO_ROWS
    if not repeats.shape[0]:
        return
    regroup = regroup_by_time(
        pk.repeat_key, pk.conn[repeats], pk.tc[repeats], pk.jid[repeats], RESEND_GAP_NS
    )
    if regroup is None:
        return
    pos, send = regroup
    pk.jid = pk.jid.copy()
    pk.jid[repeats[pos]] = pk.n_j + send
    pk.jid, pk.n_j = kernels.dense(pk.jid)
    pk.jfwd = journey_forward(pk.jid, pk.n_j, pk.is_fwd)
    pk.jconn = np.zeros(pk.n_j, dtype=np.int64)
    pk.jconn[pk.jid] = pk.conn
    warnings.append(
        f"{int(send.max()) + 1} sends of segments with no IP ID and no TCP timestamps "
        f"(nothing but time to tell their copies apart) were paired across points by "
        f"clock-corrected time: a copy was missing at some point"
    )


def _points_seen(
    rows: Rows, points: Sequence[PointFrames], pk: Packets, warnings: list[str]
) -> I64:
    """Per connection, how many points saw it (in connection order), and which points matched
    nothing: done before the path order's arrays exist, to keep the peak low."""
    cpoints = distinct_count(pk.conn, rows.pidx, pk.n_c, len(points))
    match_warnings(points, rows.pidx, pk.jid, pk.n_j, warnings)
    pk.conn = NO_ROWS
    # From here on only the TCP columns of each journey's first row are read again (gathered
    # anew): the cached columns would only raise the peak.
    rows.cols.forget(*KEEP)
    return cpoints


@dataclass(frozen=True)
class _Order:
    """Rows in table order (`final`), their journeys' positions (`sj`), where each journey and
    connection starts, and the journeys' and connections' orders."""

    final: I64
    sj: I64
    jstart: I64
    cstart: I64
    jorder: I64
    jconn: I64  # per journey in table order: its connection's position
    corder: I64
    cstart_t: I64


def _path_order(pk: Packets) -> _Order:
    """Connections by start time, their journeys by start time, each journey's rows in path
    order."""
    n, n_j, n_c = int(pk.tc.shape[0]), pk.n_j, pk.n_c
    rank_dir = np.where(pk.jfwd[pk.jid], pk.rank, pk.max_rank - pk.rank)
    jstart_t = kernels.group_min(pk.jid, pk.tc, n_j)
    cstart_t = kernels.group_min(pk.jconn, jstart_t, n_c)
    corder = np.lexsort((np.arange(n_c), cstart_t))
    crank_of = np.empty(n_c, dtype=np.int64)
    crank_of[corder] = np.arange(n_c)
    # Journeys by (connection, start time, id): stable sorts, the least significant key first.
    by_t = packed_order(jstart_t - int(jstart_t.min())) if n_j else np.zeros(0, np.int64)
    jorder = by_t[kernels.group_order(crank_of[pk.jconn][by_t], n_c)]
    del by_t
    jpos = np.empty(n_j, dtype=np.int64)
    jpos[jorder] = np.arange(n_j)
    # Path order is causal order. The ends are fixed by role (the client sends first, the server
    # receives last: a clock estimate that says otherwise is wrong, and shows as a flagged
    # negative delay rather than a silently reordered path). Between them, within one clock
    # domain the timestamps are exact and across domains the corrected times are the best
    # estimate. One sort key: journey, end rank, time since the journey's first sighting
    # (never negative; clipped at 4.3 s, far beyond one send). Rows are already in (point,
    # time) order and the sort is stable, so equal times keep the points' order.
    sort_key = np.clip(pk.tc - jstart_t[pk.jid], 0, 0xFFFFFFFF)
    jpos_row = jpos[pk.jid]
    pk.jid, pk.rank, pk.is_fwd = NO_ROWS, NO_ROWS, NO_BOOLS
    sort_key |= (jpos_row * 4 + rank_dir) << 32
    del rank_dir
    # Sorting by journey first (a counting sort) leaves the full key nearly sorted, where a
    # stable argsort only has to fix each journey's few rows.
    by_j = kernels.group_order(jpos_row, n_j)
    final = by_j[np.argsort(sort_key[by_j], kind="stable")]
    del by_j, sort_key

    sj = jpos_row[final]
    del jpos_row
    jstart = np.flatnonzero(np.r_[True, sj[1:] != sj[:-1]]) if n else np.zeros(0, np.int64)
    jstart = np.r_[jstart, n].astype(np.int64)
    jconn_sorted = crank_of[pk.jconn][jorder]
    cbound = np.r_[True, jconn_sorted[1:] != jconn_sorted[:-1]] if n_j else np.zeros(0, bool)
    cstart = np.r_[np.flatnonzero(cbound), n_j].astype(np.int64)
    return _Order(final, sj, jstart, cstart, jorder, jconn_sorted, corder, cstart_t)


def _table(
    rows: Rows,
    doms: Domains,
    pk: Packets,
    order: _Order,
    offload_byte: npt.NDArray[np.int8] | None,
    cpoints: I64,
    warnings: list[str],
) -> Table:
    """The row table in path order, with each journey's retransmission count."""
    n, n_c = int(pk.tc.shape[0]), pk.n_c
    final, jstart = order.final, order.jstart
    # Retransmissions: later sends of the same sequence space in one connection.
    jforward_sorted = pk.jfwd[order.jorder]
    seq0, plen0, flags0, proto0 = rows.cols.at(
        final[jstart[:-1]], "seq", "payload_len", "tcp_flags", "proto"
    )
    jretrans = retransmissions(order.jconn, jforward_sorted, seq0, plen0, flags0, proto0 == 6)
    del seq0, plen0, flags0, proto0
    # The table keeps where each row comes from; its other columns are read when asked for.
    # Compact dtypes where the values allow (point and frame indexes): the table lives as long
    # as the analysis.
    t_pidx = rows.pidx[final]
    r_row = rows.row
    t_row = r_row[final].astype(np.int32 if n == 0 or int(r_row.max()) < 1 << 31 else np.int64)
    del r_row
    t_tc = pk.tc[final]
    pk.tc = NO_ROWS
    negative_delay_warnings(order.sj, doms.of_point[t_pidx], t_tc, doms.names, warnings)
    return Table(
        pidx=t_pidx,
        row=t_row,
        tc=t_tc,
        jstart=jstart,
        jforward=jforward_sorted,
        jretrans=jretrans,
        cstart=order.cstart,
        cstart_ns=order.cstart_t[order.corder] if n_c else np.zeros(0, np.int64),
        cpoints=cpoints[order.corder],
        addresses=tuple(rows.addresses),
        sources=tuple((c, lut) for c, _, lut in rows.cols.sources),
        offload=offload_byte[final] if offload_byte is not None else None,
    )


def _correlation(
    points: Sequence[PointFrames],
    doms: Domains,
    solution: clk.ClockSolution,
    table: Table,
    warnings: list[str],
    notes: list[str],
) -> Correlation:
    dom_off = _domain_offsets(solution)
    return Correlation(
        points=tuple(pf.point for pf in points),
        clocks=solution.estimates,
        warnings=tuple(warnings),
        table=table,
        point_frames=tuple(points),
        offsets={pf.point.name: int(dom_off[doms.of_point[i]]) for i, pf in enumerate(points)},
        clock_models={
            pf.point.name: model
            for i, pf in enumerate(points)
            for model in [solution.models[doms.of_point[i]] if solution.models else None]
            if model is not None
        },
        notes=tuple(notes),
    )

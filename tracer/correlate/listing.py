"""Every connection's outcome, latency and break point, computed for all of them at once.

`connection_table` turns a `Correlation`'s table into one `ConnectionTable`: per connection its
client tuple as sent, Service and backend, the points it crossed, its outcome (the rules of
`tracer.correlate.outcome`) and who answered, the furthest point the request reached, connect /
server / total time, retransmissions and its slowest segment. Columnar: numpy and the compiled
group reductions over rows and journeys, no Python per connection; model objects are never
built. The numbers agree with what `build_path` says of the one connection (held to it by a
property test). ICMP errors are folded into the connection they quote; link-local and multicast
chatter is marked `noise`. Pure: no file reading (the summaries' payload bytes are read by
`tracer.summary.summarize_frames` from the frames named here), no printing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from tracer.correlate import kernels
from tracer.correlate import outcome as oc
from tracer.correlate.correlation import Correlation
from tracer.correlate.table import PROTO_NAMES
from tracer.pcap.columns import TH_ACK, TH_FIN, TH_RST, TH_SYN

I64 = npt.NDArray[np.int64]
Bools = npt.NDArray[np.bool_]

_BIG = np.iinfo(np.int64).max
_SMALL = np.iinfo(np.int64).min
# Rows handled at once by the passes over every row (bounds their working memory).
_CHUNK = 1 << 18
# ICMPv6 types that are link chatter, not requests: MLD (130-132, 143), router and neighbour
# discovery (133-137).
_ICMPV6_CHATTER = (130, 131, 132, 133, 134, 135, 136, 137, 143)


@dataclass(frozen=True)
class ConnectionTable:
    """One entry per connection of the correlation, in its numbering (arrays of length n).

    Addresses index `addresses`, points index `points`; -1 (or `None` text) where absent.
    Times in ns: `start_ns` on the reference clock, the latencies -1 where not measured.
    """

    points: tuple[str, ...]
    addresses: tuple[str, ...]
    proto: I64  # IP protocol number
    src: I64
    sport: I64  # -1 for ICMP
    dst: I64
    dport: I64
    backend: I64  # the destination after the last DNAT (-1: no DNAT)
    backend_port: I64
    path_rank: I64  # (n, len(points)): order in which the connection met each point, -1 never
    outcome: npt.NDArray[np.int8]  # codes of `outcome.OUTCOMES`
    by: I64  # the address that answered (-1: nobody)
    by_point: I64  # the point where that answer was first seen
    last_point: I64  # the furthest point the request reached
    start_ns: I64
    connect_ns: I64
    server_ns: I64
    total_ns: I64
    retransmissions: I64
    slow_from: I64  # the slowest segment of the request's way: its points
    slow_to: I64
    slow_ns: I64
    noise: Bools  # link-local / multicast chatter: not shown by default
    folded: Bools  # an ICMP error shown on the connection it quotes: never a row
    # The frames whose payload tells what the request was: (point, frame) each way, -1 none.
    req_point: I64
    req_frame: I64
    resp_point: I64
    resp_frame: I64

    def __len__(self) -> int:
        return int(self.proto.shape[0])

    def path(self, i: int) -> list[str]:
        """The points connection `i` crossed, in the order it met them."""
        return list(self.paths(np.array([i], dtype=np.int64))[0])

    def paths(self, rows: I64) -> list[tuple[str, ...]]:
        """`path` of many connections at once (each distinct order of points built once)."""
        rank = self.path_rank[rows]
        n_p = rank.shape[1]
        order = np.argsort(np.where(rank < 0, _BIG, rank), axis=1, kind="stable")
        seen = np.take_along_axis(rank, order, axis=1) >= 0
        # One number per row: its points in order, base n_p + 1 (0 = none).
        digits = np.where(seen, order + 1, 0)
        key = np.zeros(rows.shape[0], dtype=np.int64)
        for k in range(n_p):
            key = key * (n_p + 1) + digits[:, k]
        uniq, inv = np.unique(key, return_inverse=True)
        names: list[tuple[str, ...]] = []
        for u in uniq.tolist():
            ids = []
            while u:
                u, d = divmod(u, n_p + 1)
                ids.append(d - 1)
            names.append(tuple(self.points[p] for p in reversed(ids)))
        return [names[k] for k in inv.reshape(-1).tolist()]


# Prefixes of link-local and multicast addresses, as text (the address table is text; parsing
# every client address would cost more than the rest of the table): IPv4 224.0.0.0/4,
# 169.254.0.0/16 and the broadcast address, IPv6 ff00::/8 and fe80::/10.
_NOISE_V4 = tuple(f"{o}." for o in range(224, 240)) + ("169.254.", "255.255.255.255")
_NOISE_V6 = ("ff", "fe8", "fe9", "fea", "feb")


def _noise_addresses(addresses: tuple[str, ...]) -> Bools:
    out = np.zeros(len(addresses) + 1, dtype=bool)  # the trailing entry is "no address"
    out[:-1] = np.fromiter(
        (
            a.lower().startswith(_NOISE_V6) if ":" in a else a.startswith(_NOISE_V4)
            for a in addresses
        ),
        dtype=bool,
        count=len(addresses),
    )
    return out


def connection_table(corr: Correlation) -> ConnectionTable:
    """The table of every connection of `corr` (see the module docstring)."""
    tb = corr.table
    n_c = len(corr)
    n_p = len(corr.points)
    n_j = int(tb.jforward.shape[0])
    n = int(tb.pidx.shape[0])
    jstart = tb.jstart
    jconn = np.repeat(np.arange(n_c, dtype=np.int64), np.diff(tb.cstart))
    jfirst = jstart[:-1]
    jlast = jstart[1:] - 1
    pidx = tb.pidx  # compact dtype: indexed at a few rows at a time, never cast whole
    jpos = np.arange(n_j, dtype=np.int64)

    # Per journey: what packet it is (from its first row).
    # In the reader's compact dtypes: a few arrays of every journey are alive at once.
    proto_j, flags_j, plen_j, itype_j = (
        tb.column(name, jfirst) for name in ("proto", "flags", "plen", "icmp_type")
    )
    tcp_j = proto_j == 6
    syn_j = tcp_j & ((flags_j & TH_SYN) != 0) & ((flags_j & TH_ACK) == 0)
    synack_j = tcp_j & ((flags_j & (TH_SYN | TH_ACK)) == (TH_SYN | TH_ACK))
    # journey_kind's order: syn/syn-ack, then rst, then fin, then data.
    data_j = tcp_j & (plen_j > 0) & ((flags_j & (TH_SYN | TH_RST | TH_FIN)) == 0)
    fwd_j = tb.jforward
    first_j_of_c = tb.cstart[:-1]

    def first_journey(mask: Bools) -> I64:
        """Per connection, its first journey (in time order) where `mask`; -1 if none."""
        out = kernels.group_min(jconn, np.where(mask, jpos, _BIG), n_c)
        return np.where(out == _BIG, -1, out)

    # The journey that gives the client tuple (the first forward one, else the first of all)
    # and the request the path follows (TCP: the SYN; else the first forward packet).
    first_fwd = first_journey(fwd_j)
    has_fwd = first_fwd >= 0
    tuple_j = np.where(has_fwd, first_fwd, first_j_of_c)
    conn_tcp = (
        kernels.group_max(jconn, tcp_j.astype(np.int64), n_c) > 0 if n_c else np.zeros(0, bool)
    )
    syn_first = first_journey(fwd_j & syn_j)
    req_j = np.where(conn_tcp & (syn_first >= 0), syn_first, tuple_j)
    # The reply the path shows: the first SYN-ACK (else reverse packet) after the request.
    after_req = jpos > req_j[jconn]
    reply_kind = first_journey(~fwd_j & after_req & synack_j)
    reply_any = first_journey(~fwd_j & after_req)
    reply_j = np.where(conn_tcp & (reply_kind >= 0), reply_kind, reply_any)

    # Client tuple: the first row of the tuple journey, reversed when it is a reply.
    r0 = jfirst[tuple_j] if n_c else np.zeros(0, np.int64)
    src0, dst0, sp0, dp0 = (
        tb.column(k, r0).astype(np.int64) for k in ("src", "dst", "sport", "dport")
    )
    proto_c = proto_j[tuple_j].astype(np.int64) if n_c else np.zeros(0, np.int64)
    ported = np.isin(proto_c, (6, 17))
    src = np.where(has_fwd, src0, dst0)
    dst = np.where(has_fwd, dst0, src0)
    sport = np.where(ported, np.where(has_fwd, sp0, dp0), -1)
    dport = np.where(ported, np.where(has_fwd, dp0, sp0), -1)
    # Backend: the destination after the last DNAT of that journey (any change of destination
    # along its rows; the last row holds the final one).
    tj_rows, tconn = _journey_rows(jstart, tuple_j)
    tdst, tdport = (tb.column(k, tj_rows).astype(np.int64) for k in ("dst", "dport"))
    changed = np.zeros(n_c, dtype=bool)
    if tj_rows.shape[0]:
        moved = (tdst != dst0[tconn]) | (tdport != dp0[tconn])
        changed = np.bincount(tconn[moved], minlength=n_c) > 0
    last_row = jlast[tuple_j] if n_c else np.zeros(0, np.int64)
    bdst, bport = (tb.column(k, last_row).astype(np.int64) for k in ("dst", "dport"))
    changed &= has_fwd
    backend = np.where(changed, bdst, -1)
    backend_port = np.where(changed & ported, bport, -1)

    # The furthest point the request reached: the last sighting of the request journey.
    last_point = pidx[jlast[req_j]].astype(np.int64) if n_c else np.zeros(0, np.int64)
    client_p = pidx[jfirst[req_j]].astype(np.int64) if n_c else np.zeros(0, np.int64)
    server_p = last_point

    # One pass over the rows, a chunk at a time (never a per-row array of the whole table):
    # - the order in which each connection met the points (the tuple journey first, then the
    #   others, as `Connection.points`);
    # - per journey, its first and last sighting at its connection's client and server point,
    #   on that point's own clock (as `build_path` measures latency).
    width = max(n_p, 1)
    cell_first = np.full(n_c * width, _BIG, dtype=np.int64)
    jc_min = np.full(n_j, _BIG, dtype=np.int64)
    jc_max = np.full(n_j, _SMALL, dtype=np.int64)
    js_min = np.full(n_j, _BIG, dtype=np.int64)
    js_max = np.full(n_j, _SMALL, dtype=np.int64)
    times = [np.asarray(cols["t_ns"]) for cols, _ in tb.sources]
    for lo in range(0, n, _CHUNK):
        rows = np.arange(lo, min(n, lo + _CHUNK), dtype=np.int64)
        pp = pidx[rows].astype(np.int64)
        j = np.searchsorted(jstart, rows, side="right") - 1
        c = jconn[j]
        key = np.where(j == tuple_j[c], rows, rows + n)
        np.minimum(cell_first, kernels.group_min(c * width + pp, key, n_c * width), out=cell_first)
        del key
        if times:
            frame = tb.row[rows]
            t = np.empty(rows.shape[0], dtype=np.int64)
            for p, col in enumerate(times):
                at_p = pp == p
                t[at_p] = col[frame[at_p]]
            del frame
        else:
            t = tb.tc[rows]
        for here, first, last in ((client_p, jc_min, jc_max), (server_p, js_min, js_max)):
            sel = here[c] == pp
            np.minimum(first, kernels.group_min(j[sel], t[sel], n_j), out=first)
            np.maximum(last, kernels.group_max(j[sel], t[sel], n_j), out=last)
        del rows, pp, j, c, t
    cell_first = cell_first.reshape(n_c, width)[:, :n_p]
    path_rank = np.where(cell_first == _BIG, -1, cell_first)
    del cell_first

    # --- ICMP errors: folded into the connection they quote.
    links = corr.icmp_links
    err_target = np.full(n_c, -1, dtype=np.int64)
    for target, errs in links.items():
        for e in errs:
            if err_target[e] < 0:
                err_target[e] = target
    folded = err_target >= 0
    errors = np.flatnonzero(folded)
    # Each error's first sighting (where it was made, or first seen on its way back).
    err_row = jfirst[first_j_of_c[errors]] if errors.shape[0] else np.zeros(0, np.int64)

    # --- outcome: the rules of `outcome`, one packet per journey at its first sighting.
    t_first_j = tb.tc[jfirst] if n_j else np.zeros(0, np.int64)
    facts = oc.packet_facts(
        n_c,
        jconn,
        fwd_j,
        proto_j,
        flags_j,
        t_first_j,
        error_conn=err_target[errors],
        error_ns=tb.tc[err_row] if errors.shape[0] else np.zeros(0, np.int64),
    )
    now = int(tb.tc.max()) if n else 0
    codes = oc.classify(facts, now)
    answer = oc.answer_kind(codes, facts)
    # Who answered: the source of the answering packet where it was first seen.
    rst_j = first_journey(~fwd_j & tcp_j & ((flags_j & TH_RST) != 0))
    ans_j = np.where(
        answer == oc.ANSWER_RST, rst_j, np.where(answer == oc.ANSWER_REPLY, reply_j, -1)
    )
    ans_row = np.where(ans_j >= 0, jfirst[np.maximum(ans_j, 0)], -1) if n_j else np.full(n_c, -1)
    # The ICMP error's row, for connections it rejected (the first error seen).
    icmp_row = np.full(n_c, -1, dtype=np.int64)
    if errors.shape[0]:
        order = np.argsort(tb.tc[err_row], kind="stable")[::-1]
        icmp_row[err_target[errors][order]] = err_row[order]
    ans_row = np.where(answer == oc.ANSWER_ICMP, icmp_row, ans_row)
    has_ans = ans_row >= 0
    safe_ans = np.maximum(ans_row, 0)
    by = np.where(has_ans, tb.column("src", safe_ans).astype(np.int64), -1)
    by_point = np.where(has_ans, pidx[safe_ans].astype(np.int64) if n else -1, -1)

    del facts, t_first_j, after_req
    # --- latencies, as `build_path` measures them (each on one point's own clock).
    seen_c = jc_min != _BIG
    seen_s = js_min != _BIG

    def at(j: I64, arr: I64, seen: Bools) -> I64:
        ok = j >= 0
        jj = np.maximum(j, 0)
        return np.where(ok & seen[jj], arr[jj], -1) if n_j else np.full(j.shape[0], -1)

    connect = np.full(n_c, -1, dtype=np.int64)
    total = np.full(n_c, -1, dtype=np.int64)
    server = np.full(n_c, -1, dtype=np.int64)
    syn_c = at(req_j, jc_min, seen_c)
    synack_c = at(reply_j, jc_max, seen_c)
    is_synack = np.zeros(n_c, dtype=bool)
    if n_j:
        is_synack = (reply_j >= 0) & synack_j[np.maximum(reply_j, 0)]
    ok_connect = conn_tcp & is_synack & (synack_c >= 0) & (syn_c >= 0)
    connect[ok_connect] = (synack_c - syn_c)[ok_connect]
    # TCP total: first request data out at the client to the last response data back there.
    req_d = fwd_j & data_j
    resp_d = ~fwd_j & data_j
    start = kernels.group_min(jconn[req_d & seen_c], jc_min[req_d & seen_c], n_c)
    has_start = start != _BIG
    late = resp_d & seen_c & (jc_max >= start[jconn])
    end = kernels.group_max(jconn[late], jc_max[late], n_c)
    ok_total = conn_tcp & has_start & (end != _SMALL)
    total[ok_total] = (end - start)[ok_total]
    # TCP server time: the last request data in at the server before its first response data.
    out_first = kernels.group_min(jconn[resp_d & seen_s], js_min[resp_d & seen_s], n_c)
    before = req_d & seen_s & (js_max <= out_first[jconn])
    req_in = kernels.group_max(jconn[before], js_max[before], n_c)
    ok_server = conn_tcp & (out_first != _BIG) & (req_in != _SMALL)
    server[ok_server] = (out_first - req_in)[ok_server]
    # Other protocols: the request and its reply.
    other = ~conn_tcp & (reply_j >= 0)
    rep_c, req_c0 = at(reply_j, jc_max, seen_c), at(req_j, jc_min, seen_c)
    m = other & (rep_c >= 0) & (req_c0 >= 0)
    total[m] = (rep_c - req_c0)[m]
    rep_s, req_s = at(reply_j, js_min, seen_s), at(req_j, js_max, seen_s)
    m = other & (rep_s >= 0) & (req_s >= 0)
    server[m] = (rep_s - req_s)[m]

    del jc_min, jc_max, js_min, js_max, seen_c, seen_s, start, end, out_first, req_in, late
    del before, req_d, resp_d
    # Retransmissions: journeys that are a later send of an earlier one.
    retrans = np.bincount(jconn[tb.jretrans > 0], minlength=n_c).astype(np.int64)

    # The slowest segment of the request's way: between consecutive points of its journey,
    # on corrected time.
    rq_rows, rq_conn = _journey_rows(jstart, req_j)
    # Consecutive rows of one request journey at two different points.
    pair = (rq_conn[:-1] == rq_conn[1:]) & (pidx[rq_rows[:-1]] != pidx[rq_rows[1:]])
    step = rq_rows[:-1][pair]
    sc = rq_conn[:-1][pair]
    delay = tb.tc[step + 1] - tb.tc[step]
    slow_ns = kernels.group_max(sc, delay, n_c)
    hit = step[delay == slow_ns[sc]]
    hit_c = sc[delay == slow_ns[sc]]
    slow_from = np.full(n_c, -1, dtype=np.int64)
    slow_to = np.full(n_c, -1, dtype=np.int64)
    hit, hit_c = hit[::-1], hit_c[::-1]  # the first such segment wins
    slow_from[hit_c] = pidx[hit]
    slow_to[hit_c] = pidx[hit + 1]
    slow_ns = np.where(slow_ns != _SMALL, slow_ns, -1)

    del rq_rows, rq_conn, pair, step, sc, delay, hit, hit_c, tj_rows, tconn, tdst, tdport
    # Link-local and multicast chatter, and ICMPv6 neighbour discovery / MLD.
    noise_addr = _noise_addresses(tb.addresses)
    noise = noise_addr[dst] | noise_addr[src]
    if n_c:
        noise |= (proto_c == 58) & np.isin(itype_j[tuple_j], _ICMPV6_CHATTER)
    del itype_j

    # Summary frames: the first forward and reverse journeys with payload (not resends); the
    # row with the longest capture of it (some points keep a short snaplen).
    pay_j = (plen_j > 0) & (tb.jretrans == 0)
    icmp_j = np.isin(proto_j, (1, 58))
    req_pay = first_journey(fwd_j & (pay_j | icmp_j))
    resp_pay = first_journey(~fwd_j & (pay_j | icmp_j))
    req_point, req_frame = _longest_row(tb, req_pay, jstart)
    resp_point, resp_frame = _longest_row(tb, resp_pay, jstart)

    return ConnectionTable(
        points=tuple(p.name for p in corr.points),
        addresses=tb.addresses,
        proto=proto_c,
        src=src,
        sport=sport,
        dst=dst,
        dport=dport,
        backend=backend,
        backend_port=backend_port,
        path_rank=path_rank,
        outcome=codes,
        by=by,
        by_point=by_point,
        last_point=last_point,
        start_ns=tb.cstart_ns.astype(np.int64),
        connect_ns=connect,
        server_ns=server,
        total_ns=total,
        retransmissions=retrans,
        slow_from=slow_from,
        slow_to=slow_to,
        slow_ns=slow_ns,
        noise=noise,
        folded=folded,
        req_point=req_point,
        req_frame=req_frame,
        resp_point=resp_point,
        resp_frame=resp_frame,
    )


def _journey_rows(jstart: I64, journeys: I64) -> tuple[I64, I64]:
    """The rows of one journey per connection (in order), and each row's connection."""
    lens = jstart[journeys + 1] - jstart[journeys]
    total = int(lens.sum())
    conn = np.repeat(np.arange(journeys.shape[0], dtype=np.int64), lens)
    rows = np.arange(total, dtype=np.int64) - np.repeat(np.cumsum(lens) - lens, lens)
    rows += np.repeat(jstart[journeys], lens)
    return rows, conn


def _longest_row(tb: Any, journeys: I64, jstart: I64) -> tuple[I64, I64]:
    """(point, frame) of the row with the most captured bytes of each journey (-1 for -1)."""
    n_c = journeys.shape[0]
    have = np.flatnonzero(journeys >= 0)
    point = np.full(n_c, -1, dtype=np.int64)
    frame = np.full(n_c, -1, dtype=np.int64)
    if not have.shape[0]:
        return point, frame
    rows, group = _journey_rows(jstart, journeys[have])
    caplen = tb.column("pcap_len", rows).astype(np.int64)
    best = kernels.group_max(group, caplen, have.shape[0])
    top = rows[caplen == best[group]]
    gtop = group[caplen == best[group]]
    first = np.full(have.shape[0], -1, dtype=np.int64)
    first[gtop[::-1]] = top[::-1]
    point[have] = tb.pidx[first].astype(np.int64)
    frame[have] = tb.row[first].astype(np.int64)
    return point, frame


def protocol_name(proto: int) -> str:
    return PROTO_NAMES.get(proto, "ip")


__all__ = [
    "ConnectionTable",
    "connection_table",
    "protocol_name",
]

"""ICMP errors: which rows are errors, which connection each error answers, and errors about
traffic the captures never saw.

An error quotes the packet that caused it (RFC 792, RFC 4443); the quote, rewritten by
conntrack together with the error, names that packet's tuple at every point. Columnar lookups
on the row table; no model objects.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from tracer.correlate.gather import Rows
from tracer.correlate.table import Bools, Col, PointFrames, Table

# ICMP errors (RFC 792, RFC 4443): they quote the packet that caused them.
_ICMP_ERRORS = {1: (3, 4, 5, 11, 12), 58: (1, 2, 3, 4)}


def icmp_error_rows(proto: Col, icmp_type: Col) -> Bools:
    """Rows that are ICMP or ICMPv6 errors (they quote another packet; they are not requests)."""
    out = np.zeros(proto.shape[0], dtype=bool)
    for p, types in _ICMP_ERRORS.items():
        rows = np.flatnonzero(proto == p)  # few or none: test the types of those rows only
        if rows.shape[0]:
            out[rows] = np.isin(icmp_type[rows], types)
    return out


def icmp_links(table: Table, points: Sequence[PointFrames]) -> dict[int, tuple[int, ...]]:
    """Link ICMP errors to the connection of the packet they quote.

    The quote (`quoted_*` columns) holds the offending packet's protocol, ports and TCP seq as
    they were where the error was made; on the way back conntrack rewrites the quote together
    with the error, so at every point the quote agrees with the tuple that point saw: the
    quoted packet went from the error's destination, from the quoted source port to the quoted
    destination port, and (TCP) with the quoted seq, which NAT never changes. Looked up at the
    error's own point first, then at any point.
    """
    tb = table
    proto_all = tb.proto
    icmp = np.flatnonzero((proto_all == 1) | (proto_all == 58))
    if icmp.shape[0] == 0 or not points:
        return {}
    if any("quoted_proto" not in pf.frames.columns for pf in points):
        return {}
    # Every column is read once for all the rows it is needed at (never per error: a capture
    # of thousands of rejected requests holds thousands of errors).
    e = tb.columns(("quoted_proto", "quoted_sport", "quoted_dport", "quoted_seq", "dst"), icmp)
    qp_all, qs_all = e["quoted_proto"].astype(np.int64), e["quoted_sport"].astype(np.int64)
    keep = np.isin(qp_all, (6, 17)) & (qs_all >= 0)
    if not keep.any():
        return {}
    err_rows = icmp[keep]
    errs = zip(
        err_rows.tolist(),
        tb.pidx[err_rows].tolist(),
        e["dst"][keep].tolist(),
        qp_all[keep].tolist(),
        qs_all[keep].tolist(),
        e["quoted_dport"][keep].tolist(),
        e["quoted_seq"][keep].tolist(),
        strict=True,
    )
    cand = np.flatnonzero(np.isin(tb.sport, np.unique(qs_all[keep])) & np.isin(proto_all, (6, 17)))
    c = tb.columns(("proto", "src", "sport", "dport", "seq"), cand)
    # The candidate rows by what an error's quote names: (proto, source, ports) and, for TCP,
    # also the seq; each key's rows in row order.
    by_ports: dict[tuple[int, ...], list[int]] = {}
    by_seq: dict[tuple[int, ...], list[int]] = {}
    for r, pr, src, sp, dp, seq in zip(
        cand.tolist(),
        c["proto"].tolist(),
        c["src"].tolist(),
        c["sport"].tolist(),
        c["dport"].tolist(),
        c["seq"].tolist(),
        strict=True,
    ):
        by_ports.setdefault((pr, src, sp, dp), []).append(r)
        by_seq.setdefault((pr, src, sp, dp, seq), []).append(r)
    jconn = np.repeat(np.arange(tb.cstart.shape[0] - 1), np.diff(tb.cstart))

    def conn_of(r: int) -> int:
        return int(jconn[int(np.searchsorted(tb.jstart, r, side="right")) - 1])

    links: dict[int, list[int]] = {}
    for r, pidx, dst, qp, qs, qd, qseq in errs:
        if qp == 6 and qseq >= 0:
            hit = by_seq.get((qp, dst, qs, qd, qseq), [])
        else:
            hit = by_ports.get((qp, dst, qs, qd), [])
        if not hit:
            continue
        here = [h for h in hit if int(tb.pidx[h]) == pidx]
        target = conn_of((here or hit)[0])
        err_conn = conn_of(r)
        if target != err_conn:
            links.setdefault(target, [])
            if err_conn not in links[target]:
                links[target].append(err_conn)
    return {k: tuple(sorted(v, key=lambda c: int(tb.cstart_ns[c]))) for k, v in links.items()}


def drop_stray_icmp(rows: Rows, points: Sequence[PointFrames], warnings: list[str]) -> Rows:
    """Leave out ICMP errors about traffic the captures never saw.

    An ICMP error goes back to the sender of the packet it quotes, so that sender shows as a
    source somewhere in the captures when the quoted packet was captured. One whose
    destination never sent anything captured is a late answer to earlier traffic (a host
    unreachable arrives seconds after the ARP timeout): it is no request of this run.
    """
    cols = rows.cols
    err = icmp_error_rows(cols["proto"], cols["icmp_type"])
    if not err.any():
        return rows
    senders = np.unique(cols["src"][~err])
    stray = err & ~np.isin(cols["dst"], senders)
    if not stray.any():
        return rows
    first = int(np.flatnonzero(stray)[0])
    pname = points[int(rows.pidx[first])].point.name
    warnings.append(
        f"{int(stray.sum())} ICMP error frames (first at point {pname}, frame "
        f"{int(rows.row[first]) + 1}: {rows.addresses[int(cols['src'][first])]} -> "
        f"{rows.addresses[int(cols['dst'][first])]}) answer traffic the captures did not see "
        f"and were left out"
    )
    keep = ~stray
    return Rows(rows.pidx[keep], rows.t[keep], cols.filtered(keep), rows.addresses)

"""The `--list` view: a triage summary, then one row per connection (table, JSON, JSONL, CSV).

Pure: takes a `Listing` (the connection table, its summaries and the rows chosen), returns text.
The JSON document is schema `pathtrace-list/v1`:
`{"schema": ..., "summary": {...}, "connections": [ROW, ...]}`; JSONL is one ROW per line; CSV
one row per connection with the ROW's scalar fields. Rows are built from columns with one
Python step per connection (the text itself); nothing is computed here.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator, Sequence
from typing import Any

from tracer.correlate import outcome as oc
from tracer.correlate.listing import protocol_name
from tracer.correlate.triage import (
    Stats,
    endpoint_text,
    group_stats,
    groupings,
    outcome_counts,
    overall_stats,
)
from tracer.trace import Listing
from tracer.words import count

LIST_SCHEMA = "pathtrace-list/v1"
ARROW = "→"
# One encoder for every row (json.dumps with options makes a new one per call).
_encode = json.JSONEncoder(ensure_ascii=False, check_circular=False).encode
# Rows written per chunk of text.
_BATCH = 4096
# Groups shown per grouping in the table's summary (worst first): one screen.
_GROUPS_SHOWN = 6
CSV_FIELDS = (
    "index",
    "protocol",
    "client",
    "destination",
    "service",
    "backend",
    "outcome",
    "outcome_by",
    "outcome_by_point",
    "last_point",
    "points",
    "start_ns",
    "connect_ns",
    "server_ns",
    "total_ns",
    "retransmissions",
    "slowest_segment",
    "slowest_segment_ns",
    "http_status",
    "dns_rcode",
    "summary",
)


def _dur(ns: int) -> str:
    if ns < 0:
        return ""
    if ns < 1_000:
        return f"{ns}ns"
    if ns < 1_000_000:
        return f"{ns / 1e3:.0f}us"
    if ns < 1_000_000_000:
        return f"{ns / 1e6:.1f}ms" if ns < 100_000_000 else f"{ns / 1e6:.0f}ms"
    return f"{ns / 1e9:.2f}s"


def _none(v: int) -> int | None:
    return v if v >= 0 else None


def _stats_json(s: Stats) -> dict[str, Any]:
    return {
        "name": s.label,
        "connections": s.connections,
        "failed": s.failed,
        "p50_ns": _none(s.p50),
        "p90_ns": _none(s.p90),
        "p99_ns": _none(s.p99),
        "max_ns": _none(s.max),
    }


def summary_json(listing: Listing) -> dict[str, Any]:
    t, rows = listing.table, listing.counted
    overall = overall_stats(t, rows)
    groups = groupings(t, listing.point_nodes)
    return {
        "connections": int(rows.shape[0]),
        "found": listing.total,
        "hidden": listing.hidden,
        "outcomes": outcome_counts(t, rows),
        "latency": {k: v for k, v in _stats_json(overall).items() if k.endswith("_ns")},
        **{
            f"by_{name}": [_stats_json(s) for s in group_stats(labels, ids, t, rows)]
            for name, (labels, ids) in groups.items()
        },
    }


def rows_json(listing: Listing) -> Iterator[dict[str, Any]]:
    """One ROW of the JSON contract per listed connection."""
    t, s = listing.table, listing.summaries
    pts = t.points
    nodes = listing.point_nodes
    names = oc.OUTCOMES
    cols = [
        a[listing.rows].tolist()
        for a in (
            t.proto,
            t.src,
            t.sport,
            t.dst,
            t.dport,
            t.backend,
            t.backend_port,
            t.outcome,
            t.by,
            t.by_point,
            t.last_point,
            t.start_ns,
            t.connect_ns,
            t.server_ns,
            t.total_ns,
            t.retransmissions,
            t.slow_from,
            t.slow_to,
            t.slow_ns,
            s.status,
            s.rcode,
        )
    ]
    paths = t.paths(listing.rows)
    for i, path, *v in zip(listing.rows.tolist(), paths, *cols, strict=True):
        proto, src, sp, dst, dp, be, bp, code, by, byp, last, start = v[:12]
        conn, server, total, retr, sf, st, sn, status, rcode = v[12:]
        nat = be >= 0
        yield {
            "index": i,
            "protocol": protocol_name(proto),
            "client": endpoint_text(t, src, sp),
            "destination": endpoint_text(t, dst, dp),
            "service": endpoint_text(t, dst, dp) if nat else None,
            "backend": endpoint_text(t, be, bp) if nat else None,
            "points": list(path),
            "outcome": names[code],
            "outcome_by": (
                {"address": t.addresses[by], "point": pts[byp], "node": nodes[byp]}
                if by >= 0
                else None
            ),
            "last_point": pts[last] if last >= 0 else None,
            "start_ns": start,
            "connect_ns": _none(conn),
            "server_ns": _none(server),
            "total_ns": _none(total),
            "retransmissions": retr,
            "slowest_segment": (
                {"from": pts[sf], "to": pts[st], "delay_ns": sn} if sf >= 0 else None
            ),
            "http_status": _none(status),
            "dns_rcode": _none(rcode),
            "summary": s.text[i],
        }


def _batched(lines: Iterator[str]) -> Iterator[str]:
    """Lines joined into chunks of _BATCH (few writes, no whole document in memory)."""
    batch: list[str] = []
    for line in lines:
        batch.append(line)
        if len(batch) >= _BATCH:
            yield "".join(batch)
            batch = []
    if batch:
        yield "".join(batch)


def list_json_chunks(listing: Listing) -> Iterator[str]:
    """The document, one connection a line (a listing of 100,000 connections stays greppable
    and is written in a fraction of the time an indented document takes)."""
    head = json.dumps({"schema": LIST_SCHEMA, "summary": summary_json(listing)}, indent=1)
    yield head[:-2] + ',\n "connections": ['
    rows = (("\n" if k == 0 else ",\n") + _encode(r) for k, r in enumerate(rows_json(listing)))
    yield from _batched(rows)
    yield ("\n" if listing.rows.shape[0] else "") + " ]\n}\n"


def list_jsonl_chunks(listing: Listing) -> Iterator[str]:
    return _batched(_encode(r) + "\n" for r in rows_json(listing))


def _csv_row(r: dict[str, Any]) -> list[object]:
    by = r["outcome_by"] or {}
    seg = r["slowest_segment"] or {}
    return [
        r["index"],
        r["protocol"],
        r["client"],
        r["destination"],
        r["service"] or "",
        r["backend"] or "",
        r["outcome"],
        by.get("address", ""),
        by.get("point", ""),
        r["last_point"] or "",
        " ".join(r["points"]),
        r["start_ns"],
        *("" if r[k] is None else r[k] for k in ("connect_ns", "server_ns", "total_ns")),
        r["retransmissions"],
        f"{seg['from']}>{seg['to']}" if seg else "",
        seg.get("delay_ns", ""),
        "" if r["http_status"] is None else r["http_status"],
        "" if r["dns_rcode"] is None else r["dns_rcode"],
        r["summary"],
    ]


def list_csv_chunks(listing: Listing) -> Iterator[str]:
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(CSV_FIELDS)
    batch: list[list[object]] = []
    for r in rows_json(listing):
        batch.append(_csv_row(r))
        if len(batch) >= _BATCH:
            w.writerows(batch)
            batch = []
            yield out.getvalue()
            out.seek(0)
            out.truncate()
    w.writerows(batch)
    yield out.getvalue()


def _aligned(header: Sequence[str], rows: Sequence[Sequence[str]], right: set[int]) -> list[str]:
    widths = [len(h) for h in header]
    for row in rows:
        for k, cell in enumerate(row):
            if len(cell) > widths[k]:
                widths[k] = len(cell)

    def line(cells: Sequence[str]) -> str:
        parts = [
            c.rjust(widths[k]) if k in right else c.ljust(widths[k]) for k, c in enumerate(cells)
        ]
        return "  ".join(parts).rstrip()

    out = [line(header), line(["-" * w for w in widths])]
    out.extend(line(r) for r in rows)
    return out


def _stats_lines(title: str, stats: Sequence[Stats]) -> list[str]:
    if not stats:
        return []
    rows = [
        [
            s.label,
            str(s.connections),
            str(s.failed),
            _dur(s.p50),
            _dur(s.p90),
            _dur(s.p99),
            _dur(s.max),
        ]
        for s in stats[:_GROUPS_SHOWN]
    ]
    lines = _aligned(
        [title, "conns", "failed", "p50", "p90", "p99", "max"], rows, {1, 2, 3, 4, 5, 6}
    )
    if len(stats) > _GROUPS_SHOWN:
        lines.append(f"(+{len(stats) - _GROUPS_SHOWN} more; --format json lists all)")
    return lines


def render_summary(listing: Listing) -> str:
    t, rows = listing.table, listing.counted
    counts = outcome_counts(t, rows)
    n = int(rows.shape[0])
    failed = n - counts["ok"]
    parts = ", ".join(f"{v} {k}" for k, v in counts.items() if v)
    head = count(n, "connection")
    if n != listing.total:
        head += f" (of {listing.total})"
    lines = [f"{head}: {parts or 'none'}" + (f"  — {failed} not ok" if failed else "")]
    if listing.hidden:
        lines.append(f"{listing.hidden} link-local/multicast exchanges hidden (--all shows them)")
    overall = overall_stats(t, rows)
    if overall.p50 >= 0:
        lines.append(
            f"total time: p50 {_dur(overall.p50)}  p90 {_dur(overall.p90)}  "
            f"p99 {_dur(overall.p99)}  max {_dur(overall.max)}"
        )
    for name, (labels, ids) in groupings(t, listing.point_nodes).items():
        stats = group_stats(labels, ids, t, rows)
        if len(stats) > 0:
            lines.append("")
            lines.extend(_stats_lines(name, stats))
    return "\n".join(lines) + "\n"


_HEADER = (
    "#",
    "start s",
    "proto",
    f"client {ARROW} destination",
    "backend",
    "outcome",
    "reached (points)",
    "connect",
    "server",
    "total",
    "rtx",
    "slowest segment",
    "summary",
)
_RIGHT = frozenset((0, 1, 7, 8, 9, 10))


def _table_columns(listing: Listing) -> list[list[str]]:
    """The table's cells, column by column (one list of strings per column)."""
    t, s = listing.table, listing.summaries
    pts = t.points
    rows = listing.rows
    t0 = int(t.start_ns.min()) if len(t) else 0

    def ep(ip: Any, port: Any) -> list[str]:
        return [
            endpoint_text(t, a, p)
            for a, p in zip(ip[rows].tolist(), port[rows].tolist(), strict=True)
        ]

    names = oc.OUTCOMES
    outcome = [
        names[code]
        + (f" by {t.addresses[by]}" if by >= 0 and code in (oc.RESET, oc.REJECTED) else "")
        for code, by in zip(t.outcome[rows].tolist(), t.by[rows].tolist(), strict=True)
    ]
    n_points = (t.path_rank[rows] >= 0).sum(axis=1).tolist()
    reached = [
        f"{pts[last]} ({k})" if last >= 0 else ""
        for last, k in zip(t.last_point[rows].tolist(), n_points, strict=True)
    ]
    slowest = [
        f"{pts[a]}>{pts[b]} {_dur(ns)}" if a >= 0 else ""
        for a, b, ns in zip(
            t.slow_from[rows].tolist(),
            t.slow_to[rows].tolist(),
            t.slow_ns[rows].tolist(),
            strict=True,
        )
    ]
    return [
        [str(i) for i in rows.tolist()],
        [f"{(v - t0) / 1e9:.3f}" for v in t.start_ns[rows].tolist()],
        [protocol_name(v) for v in t.proto[rows].tolist()],
        [f"{a} {ARROW} {b}" for a, b in zip(ep(t.src, t.sport), ep(t.dst, t.dport), strict=True)],
        [
            x if b >= 0 else ""
            for x, b in zip(ep(t.backend, t.backend_port), t.backend[rows].tolist(), strict=True)
        ],
        outcome,
        reached,
        [_dur(v) for v in t.connect_ns[rows].tolist()],
        [_dur(v) for v in t.server_ns[rows].tolist()],
        [_dur(v) for v in t.total_ns[rows].tolist()],
        [str(v) if v else "" for v in t.retransmissions[rows].tolist()],
        slowest,
        [s.text[i] for i in rows.tolist()],
    ]


def list_table_chunks(listing: Listing, *, with_summary: bool = True) -> Iterator[str]:
    """The summary, then a table with one row per listed connection."""
    if with_summary:
        yield render_summary(listing) + "\n"
    cols = _table_columns(listing)
    widths = [max([len(h), *map(len, col)]) for h, col in zip(_HEADER, cols, strict=True)]
    # One format string for the whole row: a single call per line.
    template = "  ".join(
        f"{{:{'>' if k in _RIGHT else '<'}{w}}}" for k, w in enumerate(widths)
    ).format

    def line(cells: Sequence[str]) -> str:
        return template(*cells).rstrip() + "\n"

    yield line(_HEADER) + line(["-" * w for w in widths])
    yield from _batched(map(line, zip(*cols, strict=True)))


def render_list(listing: Listing, *, with_summary: bool = True) -> str:
    """The summary and the table, as one string ending with a newline."""
    return "".join(list_table_chunks(listing, with_summary=with_summary))


def render_list_json(listing: Listing) -> str:
    return "".join(list_json_chunks(listing))


def render_list_jsonl(listing: Listing) -> str:
    return "".join(list_jsonl_chunks(listing))


def render_list_csv(listing: Listing) -> str:
    return "".join(list_csv_chunks(listing))


def listing_chunks(listing: Listing, fmt: str) -> Iterator[str]:
    """The listing in `fmt` (table, json, jsonl or csv), a chunk of text at a time."""
    if fmt == "json":
        return list_json_chunks(listing)
    if fmt == "jsonl":
        return list_jsonl_chunks(listing)
    if fmt == "csv":
        return list_csv_chunks(listing)
    return list_table_chunks(listing)

"""The many-connection view: the listing's triage summary as the core computed it, the frame the
inline script draws the scatter, the outcome counts and the sortable, filterable table into, and
which rows and paths one file holds.

Pure: listing rows in, HTML lines or choices out; nothing here computes an outcome or a
percentile.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from tracer.report.html.page import Report, esc
from tracer.report.table import ms
from tracer.words import count

_GROUPS_SHOWN = 12


_PCT = ("p50_ns", "p90_ns", "p99_ns", "max_ns")


def _ms_or_dash(ns: Any) -> str:
    return ms(ns) if isinstance(ns, int) else "—"


def _triage(summary: Mapping[str, Any]) -> list[str]:
    """The listing's summary as the core computed it: connections by outcome, the latency
    percentiles overall and per backend, Service and node (worst first, as listed)."""
    if not summary:
        return []
    out = []
    outcomes = summary.get("outcomes") or {}
    parts = [
        f'<span class="oc oc-{esc(k)}">{esc(v)} {esc(k)}</span>' for k, v in outcomes.items() if v
    ]
    head = count(int(summary.get("connections", 0)), "connection")
    out.append(f"<p class='counts'><b>{esc(head)}</b>: {', '.join(parts) or 'none'}")
    lat = summary.get("latency") or {}
    if isinstance(lat.get("p50_ns"), int):
        times = (f"{k[:-3]} {esc(_ms_or_dash(lat.get(k)))} ms" for k in _PCT)
        out.append(" · total time " + " · ".join(times))
    out.append("</p>")
    if summary.get("hidden"):
        out.append(
            f"<p class='hint'>{esc(count(int(summary['hidden']), 'link-local/multicast exchange'))}"
            " left out (`--list --all` lists them)</p>"
        )
    out.append('<div class="pct">')
    for key, title in (("by_backend", "backend"), ("by_service", "Service"), ("by_node", "node")):
        groups = summary.get(key) or []
        if not groups:
            continue
        out.append(
            f'<table class="pctl" data-by="{title.lower()}"><thead><tr><th>{title}</th>'
            '<th class="num">conns</th><th class="num">failed</th><th class="num">p50</th>'
            '<th class="num">p90</th><th class="num">p99</th><th class="num">max (ms)</th>'
            "</tr></thead><tbody>"
        )
        for g in groups[:_GROUPS_SHOWN]:
            bad = " hi" if g.get("failed") else ""
            out.append(
                f"<tr><td class='mono'>{esc(g.get('name', ''))}</td>"
                f"<td class='num'>{esc(g.get('connections', ''))}</td>"
                f"<td class='num{bad}'>{esc(g.get('failed', ''))}</td>"
                + "".join(f"<td class='num'>{esc(_ms_or_dash(g.get(k)))}</td>" for k in _PCT)
                + "</tr>"
            )
        if len(groups) > _GROUPS_SHOWN:
            out.append(
                f"<tr><td colspan=7 class='hint'>+{len(groups) - _GROUPS_SHOWN} more (in the"
                " embedded data)</td></tr>"
            )
        out.append("</tbody></table>")
    out.append("</div>")
    return out


def connections_section(report: Report) -> list[str]:
    listing = report.listing
    if listing is None:
        return []
    n = len(listing.get("connections") or [])
    return [
        '<section id="connections">',
        f"<h2>Every connection ({esc(count(n, 'connection'))})</h2>",
        *_triage(listing.get("summary") or {}),
        *([f"<p class='capped'>{esc(report.listing_note)}</p>"] if report.listing_note else []),
        '<p class="hint">Start vs. total latency, coloured by outcome; click a dot or a row for'
        " its path. The counts below, the dots and the table follow the filter.</p>",
        '<div id="outcomes" class="outcomes"></div>',
        '<div class="scroll"><canvas id="scatter" width="960" height="300"></canvas></div>',
        '<div id="detail" class="detail" hidden></div>',
        '<div class="controls"><label>filter <input id="filter" type="search"'
        ' placeholder="e.g. 10.244.2.9 or GET /api or outcome=reset or total>200"></label>'
        ' <label><input id="failed" type="checkbox"> failed only</label>'
        ' <span id="shown"></span></div>',
        '<div class="scroll"><table id="conns" class="conns"><thead></thead><tbody></tbody>'
        "</table></div>",
        '<p id="more" class="hint"></p>',
        "<noscript><p>The connection view needs JavaScript; the data is in the"
        " <code>pathtrace-data</code> element of this file.</p></noscript>",
        "</section>",
    ]


DETAILS_CAP = 40  # paths of listed connections kept in one file (about 1-2 KB each)


LIST_CAP = 100_000  # connections kept in one file (about 45 bytes each): a browser stays quick


def rows_to_embed(
    rows: Sequence[Mapping[str, Any]], cap: int = LIST_CAP
) -> tuple[list[Mapping[str, Any]], str]:
    """The rows one file holds, in their order, and the note that says what was left out:
    all of them up to `cap`; past it every failed one first, then the others in order."""
    if len(rows) <= cap:
        return list(rows), ""
    failed = {id(r) for r in rows if r.get("outcome") not in (None, "ok")}
    room = max(cap - len(failed), 0)
    keep: list[Mapping[str, Any]] = []
    for r in rows:
        if id(r) in failed and len(keep) < cap:
            keep.append(r)
        elif id(r) not in failed and room > 0:
            keep.append(r)
            room -= 1
    note = (
        f"This file holds {len(keep):,} of the {len(rows):,} connections: every failed one"
        f" first, then the others in order, up to {cap:,}; the summary above counts them all."
        " Narrow what a file holds with --list --failed / --where … --html."
    )
    return keep, note


def details_to_precompute(
    rows: Sequence[Mapping[str, Any]], cap: int = DETAILS_CAP
) -> tuple[list[int], str]:
    """Which listed connections get their path in the file, and the note that says so.

    Every one when they are few; else the failed ones (taken in turn from each outcome, so that
    every kind of failure is there), then the slowest of the rest, `cap` in all.
    """
    if len(rows) <= cap:
        return [int(r["index"]) for r in rows], "every connection's path is in this file"
    groups: dict[str, list[int]] = {}
    for r in rows:
        o = r.get("outcome")
        if o is not None and o != "ok":
            groups.setdefault(str(o), []).append(int(r["index"]))
    failed_n = sum(len(g) for g in groups.values())
    chosen: list[int] = []
    queues = [list(reversed(g)) for g in groups.values()]
    while len(chosen) < cap * 3 // 4 and any(queues):
        for q in queues:
            if q and len(chosen) < cap * 3 // 4:
                chosen.append(q.pop())
    taken = set(chosen)
    timed = [r for r in rows if r.get("total_ns") is not None and int(r["index"]) not in taken]
    timed.sort(key=lambda r: -int(r["total_ns"]))
    slow = [int(r["index"]) for r in timed[: cap - len(chosen)]]
    parts = []
    if groups:
        parts.append(f"{len(chosen)} of the {count(failed_n, 'failed connection')}")
    if slow:
        parts.append(f"the {count(len(slow), 'slowest other connection')}")
    if not parts:
        return [], "no path is in this file: this listing has no outcomes or latencies to pick by"
    return chosen + slow, f"paths are in this file for {' and '.join(parts)} (at most {cap})"

"""One self-contained HTML file per run: the traced request and, for a busy run, every connection.

The report opens anywhere, offline: CSS, the ladder (SVG), the latency waterfall (SVG) and a small
script are inline; nothing is fetched. Everything about the traced request is plain HTML, readable
with scripts off and when printed: a header (request, outcome, total, Service and backend), the
break when the request went no further, `diagnose` findings, the ladder with its legend, the
waterfall of one round trip (each segment, the server's own time, the clock bound where two
clocks meet), the hop tables, the DNS lookup, the clocks, the rule evidence (collapsed) and the
warnings. The many-connection view (a scatter of start vs. total latency coloured by outcome,
outcome counts, percentiles per backend, Service and node, a sortable and filterable table, and a
click-through to a connection's path) is drawn by the inline script from the embedded JSON
(`report_data`, schema `pathtrace-html/v1`), which holds the listing column by column with repeated
strings numbered once, so that 10,000 connections stay a few hundred KB.

Pure: data in, one string out (the two asset files are read from the package). Nothing here
decides an outcome or a percentile the core should compute: rows come as `pathtrace-list/v1`
rows, paths as `Path`s.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from html import escape
from importlib import resources
from typing import Any

from tracer.correlate.legs import is_proxy
from tracer.dnslookup import DnsLookup
from tracer.explain.evidence import PathEvidence
from tracer.model import Hop, Journey, Path, Segment
from tracer.report.evidence import compact_lines, evidence_lines
from tracer.report.json import path_json
from tracer.report.mermaid import rewrite_words
from tracer.report.svg import changed_tuples, render_svg
from tracer.report.table import (
    ARROW,
    answered_by_icmp,
    clock_text,
    ms,
    ms_words,
    translation_text,
    utc,
    went_no_further,
)
from tracer.words import count

SCHEMA = "pathtrace-html/v1"
# Listing columns kept in the embedded data, in this order (pathtrace-list/v1 row keys).
LIST_COLUMNS = (
    "index",
    "protocol",
    "client",
    "destination",
    "service",
    "backend",
    "outcome",
    "outcome_by",
    "last_point",
    "start_ns",
    "connect_ns",
    "server_ns",
    "total_ns",
    "retransmissions",
    "summary",
)
_TIMES = ("connect_ns", "server_ns", "total_ns")
OUTCOMES = ("ok", "reset", "rejected", "unanswered", "incomplete")


@dataclass(frozen=True)
class Report:
    """What one report shows; every field but `source` may be empty.

    `listing` is a `pathtrace-list/v1` document (every connection of the run); `details` the
    paths precomputed for some of its connections (the failed and the slowest), with
    `details_note` saying how they were chosen and whether a cap cut them; `findings` are
    `pathtrace-diagnose/v1` finding objects; `listing_note` says what a capped listing left out
    (`rows_to_embed`); `row` is the traced request's own listing row (its
    outcome and who answered); `names` maps addresses to Service and pod names; `story` is
    `explain`'s step-by-step text; `journeys` every packet of the client's connection.
    """

    source: str
    path: Path | None = None
    dns: DnsLookup | None = None
    evidence: PathEvidence | None = None
    evidence_json: list[dict[str, Any]] | None = None
    findings: Sequence[Mapping[str, Any]] = ()
    listing: Mapping[str, Any] | None = None
    details: Mapping[int, Path] = field(default_factory=dict)
    details_note: str = ""
    listing_note: str = ""
    row: Mapping[str, Any] | None = None
    names: Mapping[str, str] = field(default_factory=dict)
    story: str = ""
    journeys: tuple[Journey, ...] = ()
    title: str = ""
    version: str = ""


@cache
def _asset(name: str) -> str:
    return resources.files("tracer.report").joinpath("assets", name).read_text("utf-8")


def _e(text: object) -> str:
    return escape(str(text), quote=True)


# --- the embedded data --------------------------------------------------------------------------


def _endpoint_parts(text: str) -> tuple[str, int | None]:
    """ "10.244.1.2:53404" -> ("10.244.1.2", 53404); "[fd00::1]:80" -> ("[fd00::1]", 80)."""
    host, sep, port = text.rpartition(":")
    if sep and port.isdigit() and (not host.count(":") or host.endswith("]")):
        return host, int(port)
    return text, None


def _flat(value: Any) -> Any:
    """A row value as one string or number: who answered as "ADDRESS at POINT", other objects
    as their values' words, lists joined by " > "."""
    if isinstance(value, Mapping):
        if "address" in value and "point" in value:
            return f"{value['address']} at {value['point']}"
        return " ".join(str(v) for v in value.values() if v not in (None, ""))
    if isinstance(value, list | tuple):
        return " > ".join(str(v) for v in value)
    return value


class _Strings:
    """Repeated strings numbered once: the column holds numbers into `values`."""

    def __init__(self) -> None:
        self.values: list[str] = []
        self._ids: dict[str, int] = {}

    def id(self, s: Any) -> int | None:
        if s is None or s == "":
            return None
        s = str(s)
        i = self._ids.get(s)
        if i is None:
            i = self._ids[s] = len(self.values)
            self.values.append(s)
        return i


def _packed(values: list[Any]) -> Any:
    """A column in its shortest form: {"c": v} when every value is v (with "x": [[row, value],
    ...] for the few that differ), {"seq": [first, step]}
    for an arithmetic sequence, {"d": [first, delta, ...]} when the differences are shorter
    (a null stays null and the next value is a difference from the last number), else the
    values themselves."""
    if not values:
        return values
    if all(v == values[0] for v in values):
        return {"c": values[0]}
    common = Counter(values).most_common(1)[0][0]
    others = [[i, v] for i, v in enumerate(values) if v != common]
    if len(others) * 8 < len(values):
        return {"c": common, "x": others}
    if not all(isinstance(v, int) or v is None for v in values):
        return values
    if None not in values and len(values) > 1:
        step = values[1] - values[0]
        if all(b - a == step for a, b in zip(values, values[1:], strict=False)):
            return {"seq": [values[0], step]}
    deltas: list[int | None] = []
    last = 0
    for v in values:
        if v is None:
            deltas.append(None)
        else:
            deltas.append(v - last)
            last = v
    plain = json.dumps(values, separators=(",", ":"))
    packed = json.dumps(deltas, separators=(",", ":"))
    return {"d": deltas} if len(packed) < len(plain) else values


def list_data(listing: Mapping[str, Any]) -> dict[str, Any]:
    """The listing's rows column by column: numbers as numbers (times in µs since the first
    connection's start), strings numbered once in `strings`, an endpoint column with many
    different values split into an address (numbered) and a port; each column packed
    (`_packed`); absent keys stay absent."""
    rows: Sequence[Mapping[str, Any]] = listing.get("connections") or []
    strings = _Strings()
    cols: dict[str, list[Any]] = {}
    starts = [r["start_ns"] for r in rows if isinstance(r.get("start_ns"), int)]
    t0 = min(starts) if starts else 0
    present = [c for c in LIST_COLUMNS if any(c in r for r in rows)]
    for c in present:
        values = [_flat(r.get(c)) for r in rows]
        if c == "start_ns":
            cols["start_us"] = [None if v is None else (v - t0) // 1000 for v in values]
        elif c in _TIMES:
            cols[c[:-3] + "_us"] = [None if v is None else round(v / 1000) for v in values]
        elif c in ("index", "retransmissions"):
            cols[c] = values
        elif c in ("client", "destination", "backend") and len(set(values)) > len(values) // 4:
            parts = [_endpoint_parts(v) if isinstance(v, str) else (None, None) for v in values]
            cols[c] = [strings.id(h) for h, _ in parts]
            cols[c + "_port"] = [p for _, p in parts]
        else:
            cols[c] = [strings.id(v) for v in values]
    return {
        "count": len(rows),
        "t0_ns": t0,
        "summary": listing.get("summary") or {},
        "strings": strings.values,
        "columns": {k: _packed(v) for k, v in cols.items()},
    }


def _hop_rows_data(hops: Sequence[Hop]) -> list[list[Any]]:
    out: list[list[Any]] = []
    for h, shown in zip(hops, changed_tuples(hops), strict=True):
        what = "proxy" if is_proxy(h) else rewrite_words(h.translation) if h.translation else ""
        out.append([h.point, h.interface or "", round(h.t_ns / 1e6, 3), shown, what])
    return out


def path_data(path: Path) -> dict[str, Any]:
    """A listed connection's path, small: per hop [point, interface, ms, tuple where it
    changed, rewrite], the latency, and how it ended."""
    lat = path.latency
    end = "icmp" if answered_by_icmp(path) else "none" if not path.reverse else "reply"
    return {
        "request": {
            "index": path.request.index,
            "summary": path.request.summary,
            "backend": path.request.backend,
        },
        "forward": _hop_rows_data(path.forward),
        "reverse": _hop_rows_data(path.reverse),
        "latency_us": [
            None if v is None else round(v / 1000)
            for v in (lat.connect_ns, lat.server_ns, lat.total_ns)
        ],
        "end": end,
    }


def report_data(report: Report) -> dict[str, Any]:
    """The embedded JSON: the traced request (pathtrace/v1), the findings, the listing and the
    precomputed paths of listed connections."""
    doc: dict[str, Any] = {"schema": SCHEMA, "source": report.source}
    if report.path is not None:
        doc["request"] = path_json(report.path, dns=report.dns, evidence=report.evidence_json)
        doc["outcome"] = dict(report.row) if report.row is not None else None
    doc["findings"] = [dict(f) for f in report.findings]
    if report.listing is not None:
        doc["list"] = list_data(report.listing)
        doc["paths"] = {str(k): path_data(p) for k, p in sorted(report.details.items())}
        doc["paths_note"] = report.details_note
    return doc


def _script_json(doc: Mapping[str, Any]) -> str:
    # Inside <script> only "</" can end the element early; JSON allows "<\/".
    text = json.dumps(doc, ensure_ascii=False, separators=(",", ":"))
    return text.replace("</", "<\\/")


# --- the traced request -------------------------------------------------------------------------


def _outcome(report: Report, path: Path) -> tuple[str, str, str]:
    """(css class, words, who answered) for the header."""
    row = report.row or {}
    outcome = row.get("outcome")
    by = row.get("outcome_by")
    by_words = _flat(by) if by else ""
    if outcome:
        cls = "ok" if outcome == "ok" else "bad"
        return cls, str(outcome), str(by_words)
    if answered_by_icmp(path):
        return "bad", "ICMP error", str(by_words or path.reverse[0].tuple5.src)
    if not path.reverse:
        return "bad", "no reply", ""
    return "ok", "answered", str(by_words)


def _named(address: str | None, names: Mapping[str, str]) -> str:
    if not address:
        return ""
    ip, _ = _endpoint_parts(address)
    name = names.get(ip.strip("[]"))
    return f"{address} ({name})" if name else address


def _header(report: Report, path: Path) -> list[str]:
    r = path.request
    cls, words, by = _outcome(report, path)
    title = f"{r.protocol} {r.client} {ARROW} {r.destination}"
    out = ['<header class="request">', f"<h1>{_e(title)}</h1>"]
    if r.summary:
        out.append(f'<p class="summary">{_e(r.summary)}</p>')
    facts = [
        (
            "outcome",
            f'<span class="badge {cls}">{_e(words)}</span>' + (f" by {_e(by)}" if by else ""),
        )
    ]
    total = path.latency.total_ns
    facts.append(("total", f"{_e(ms(total))} ms" if total is not None else "not measured"))
    if path.latency.server_ns is not None:
        facts.append(("server", f"{_e(ms(path.latency.server_ns))} ms"))
    dest_name = _named(r.destination, report.names)
    service = (report.row or {}).get("service")
    if dest_name != r.destination or service:
        # A destination with a name from the run, or one a DNAT rewrote (the listing says so).
        facts.append(("Service", _e(dest_name)))
    if r.backend and r.backend != r.destination:
        facts.append(("backend", _e(_named(r.backend, report.names))))
    if r.start_ns:
        facts.append(("started", _e(utc(r.start_ns))))
    facts.append(("request", f"#{r.index}"))
    out.append('<dl class="facts">')
    out += [f"<div><dt>{k}</dt><dd>{v}</dd></div>" for k, v in facts]
    out.append("</dl>")
    if went_no_further(path):
        last = path.forward[-1]
        where = f"{last.point} {last.interface}" if last.interface else last.point
        if answered_by_icmp(path):
            back = path.reverse[0]
            after = back.t_ns - last.t_ns
            why = (
                f"an ICMP error from {back.tuple5.src} came back {ms(after)} ms after it was last"
                " seen"
            )
        else:
            why = "no reply was seen at any capture point"
        out.append(
            f'<p class="break" id="break"><b>✕ The request went no further than {_e(where)}</b>'
            f" (node {_e(last.node or '?')}): {_e(why)}.</p>"
        )
    out.append("</header>")
    return out


def _findings(findings: Sequence[Mapping[str, Any]]) -> list[str]:
    if not findings:
        return []
    out = ['<section id="findings"><h2>Findings</h2><ol class="findings">']
    for f in findings:
        sev = str(f.get("severity", "info"))
        out.append(f'<li class="sev-{_e(sev)}"><span class="badge {_e(sev)}">{_e(sev)}</span> ')
        out.append(f"step {_e(f.get('step', ''))}: <b>{_e(f.get('title', ''))}</b>")
        ev = f.get("evidence") or []
        items = "".join(f"<li>{_e(e)}</li>" for e in ev)
        nxt = f'<p class="next">next: {_e(f["next"])}</p>' if f.get("next") else ""
        if sev == "info" and (ev or nxt):
            # As in the text report: what needs no action keeps its evidence folded.
            out.append(f"<details><summary>evidence</summary><ul>{items}</ul>{nxt}</details>")
        else:
            out.append(f"<ul>{items}</ul>{nxt}" if ev else nxt)
        out.append("</li>")
    out.append("</ol></section>")
    return out


# The waterfall: one round trip, each piece a bar after the one before it.
_W_LABEL = 300
_W_BARS = 560
_W_ROW = 22


@dataclass(frozen=True)
class _Bar:
    label: str
    ns: int
    kind: str  # "net", "in", "server", "wait", "back-net", "back-in"
    bound_ns: int | None = None


def _groups(hops: Sequence[Hop]) -> list[list[Hop]]:
    out: list[list[Hop]] = []
    for h in hops:
        if out and out[-1][-1].point == h.point and not is_proxy(h):
            out[-1].append(h)
        else:
            out.append([h])
    return out


def _segment_bound(segments: Sequence[Segment], a: str, b: str) -> int | None:
    for s in segments:
        if {s.from_point, s.to_point} == {a, b} and s.error_bound_ns:
            return s.error_bound_ns
    return None


def _legs(hops: Sequence[Hop], segments: Sequence[Segment], back: bool) -> list[_Bar]:
    bars: list[_Bar] = []
    groups = _groups(hops)
    for i, g in enumerate(groups):
        if i > 0:
            p = groups[i - 1][-1]
            took = g[0].t_ns - p.t_ns
            if is_proxy(g[0]):
                # The proxy's own time: the request (or response) in, the next connection's out.
                bars.append(_Bar(f"L7 proxy {g[0].point}: its own time", took, "proxy"))
            else:
                same = p.node == g[0].node
                bound = None if same else _segment_bound(segments, p.point, g[0].point)
                bars.append(_Bar(f"{p.point} {ARROW} {g[0].point}", took, "net", bound))
        if len(g) > 1:
            ifaces = [h.interface for h in g if h.interface]
            inside = f" ({ifaces[0]} {ARROW} {ifaces[-1]})" if len(ifaces) > 1 else ""
            bars.append(_Bar(f"inside {g[0].point}{inside}", g[-1].t_ns - g[0].t_ns, "in"))
    if back:
        bars = [_Bar(b.label, b.ns, "back-" + b.kind, b.bound_ns) for b in bars]
    return bars


def waterfall_bars(path: Path) -> list[_Bar]:
    """The request's way out (its first packet's hops), the turn (the server's own time, or
    the wait at the point that answered instead), and the way back (the first reply's hops)."""
    segs = path.latency.segments
    bars = _legs(path.forward, segs, back=False)
    if path.forward and path.reverse:
        last, first = path.forward[-1], path.reverse[0]
        server = path.latency.server_ns
        if first.point == last.point and last.role == "server" and server is not None:
            bars.append(_Bar(f"server {last.point}: its own time", server, "server"))
        elif answered_by_icmp(path):
            label = (
                f"at {last.point}: until the ICMP error"
                if first.point == last.point
                else f"{last.point} → ICMP error from {first.point}"
            )
            bars.append(_Bar(label, first.t_ns - last.t_ns, "wait"))
        else:
            bars.append(_Bar(f"turn at {first.point}", first.t_ns - last.t_ns, "server"))
        bars += _legs(path.reverse, segs, back=True)
    return bars


def _waterfall(path: Path) -> list[str]:
    bars = waterfall_bars(path)
    if not bars:
        return []
    total = sum(max(b.ns, 0) for b in bars) or 1
    rows = len(bars)
    height = 26 + rows * _W_ROW + 10
    width = _W_LABEL + _W_BARS + 120
    scale = _W_BARS / total
    svg = [
        f'<svg class="waterfall" xmlns="http://www.w3.org/2000/svg" width="{width}"'
        f' height="{height}" viewBox="0 0 {width} {height}" role="img"'
        ' aria-label="latency waterfall">'
    ]
    x, y = 0.0, 26
    svg.append(
        f'<text x="{_W_LABEL}" y="14" class="axis">0</text>'
        f'<text x="{_W_LABEL + _W_BARS}" y="14" class="axis" text-anchor="end">'
        f"{_e(ms(total))} ms</text>"
    )
    for b in bars:
        w = max(b.ns, 0) * scale
        svg.append(
            f'<text x="{_W_LABEL - 8}" y="{y + 14}" text-anchor="end" class="wl">{_e(b.label)}</text>'
        )
        svg.append(
            f'<rect x="{_W_LABEL + x:.1f}" y="{y + 4}" width="{max(w, 1.5):.1f}" height="13"'
            f' class="wb {b.kind}"><title>{_e(b.label)}: {_e(ms(b.ns))} ms</title></rect>'
        )
        if b.bound_ns is not None and b.bound_ns > 0:
            # The clock bound: how far the two clocks' correction may be off, either way.
            cx = _W_LABEL + x + w
            half = b.bound_ns * scale
            svg.append(
                f'<path d="M{cx - half:.1f} {y + 10} H{cx + half:.1f} M{cx - half:.1f} {y + 5}'
                f' V{y + 15} M{cx + half:.1f} {y + 5} V{y + 15}" class="bound"/>'
            )
        note = " !" if b.ns < 0 else ""
        bound = f" ± {ms(b.bound_ns)}" if b.bound_ns and b.bound_ns > 0 else ""
        svg.append(
            f'<text x="{_W_LABEL + x + w + 6:.1f}" y="{y + 14}" class="wv">'
            f"{_e(ms(b.ns).rstrip(' !'))}{_e(bound)} ms{note}</text>"
        )
        x += w
        y += _W_ROW
    svg.append("</svg>")
    lat = path.latency
    keys = [
        ("connect", lat.connect_ns, "handshake (SYN to SYN-ACK) at the client"),
        ("server", lat.server_ns, "request in to reply out at the server"),
        ("proxy", lat.proxy_ns, "inside the L7 proxies"),
        ("total", lat.total_ns, "first request packet to last reply packet"),
    ]
    table = ['<table class="kv">']
    for name, v, why in keys:
        if name == "proxy" and v is None:
            continue
        shown = f"{ms(v)} ms" if v is not None else "not measured"
        table.append(f"<tr><th>{name}</th><td class='num'>{_e(shown)}</td><td>{_e(why)}</td></tr>")
    table.append("</table>")
    legend = (
        '<p class="legend"><span class="sw net"></span>network between points '
        '<span class="sw in"></span>inside a point '
        '<span class="sw server"></span>the server (or the point that answered) '
        '<span class="sw back-net"></span>the way back '
        + ('<span class="sw proxy"></span>an L7 proxy\'s own time ' if path.stitches else "")
        + '<span class="sw bound"></span>clock bound (two clocks)</p>'
    )
    return [
        '<section id="waterfall"><h2>Latency</h2>',
        '<p class="hint">One round trip, each piece after the one before: the request\'s first'
        " packet out, the server's own time (request in to reply out), the first reply back."
        " Times between points on different clocks carry the clocks' bound.</p>",
        *svg,
        legend,
        *table,
        "</section>",
    ]


def _hops_table(title: str, hops: Sequence[Hop], empty: str) -> list[str]:
    out = [f"<h3>{_e(title)}</h3>"]
    if not hops:
        return [*out, f'<p class="empty">{_e(empty)}</p>']
    out.append(
        '<table class="hops"><thead><tr><th>#</th><th>point</th><th>node</th><th>interface</th>'
        "<th>dir</th><th>time (ms)</th><th>Δ (ms)</th><th>tuple</th><th>translation</th>"
        "</tr></thead><tbody>"
    )
    prev = None
    for i, h in enumerate(hops, 1):
        delta = "" if prev is None else ms(h.t_ns - prev, signed=True)
        tr = "L7 proxy hand-over" if is_proxy(h) else translation_text(h.translation)
        cls = ' class="rewrite"' if h.translation is not None else ""
        out.append(
            f"<tr{cls}><td class='num'>{i}</td><td>{_e(h.point)}</td><td>{_e(h.node or '')}</td>"
            f"<td>{_e(h.interface or '')}</td><td>{_e('proxy' if is_proxy(h) else h.direction or '')}</td>"
            f"<td class='num'>{_e(ms(h.t_ns))}</td><td class='num'>{_e(delta)}</td>"
            f"<td class='mono'>{_e(f'{h.tuple5.src} {ARROW} {h.tuple5.dst}')}</td>"
            f"<td class='mono'>{_e(tr).replace(chr(10), '<br>')}</td></tr>"
        )
        prev = h.t_ns
    out.append("</tbody></table>")
    return out


_KIND_WORDS = {"syn": "SYN", "syn-ack": "SYN-ACK", "ack": "ACK", "fin": "FIN", "rst": "RST"}


def exchange_rows(journeys: Sequence[Journey], anchor: str) -> list[dict[str, Any]]:
    """Every packet of the connection in the order sent: the time it was seen at `anchor` (the
    client's point: one clock, so the times are exact) since the first, the way it went, what
    it was, and the points that saw it in path order. A packet `anchor` never saw has no time."""
    rows = []
    t0 = None
    for j in journeys:
        at = next((o for o in j.observations if o.point == anchor), None)
        if at is not None and t0 is None:
            t0 = at.t_ns
        points = list(dict.fromkeys(o.point for o in j.observations))
        size = max((o.payload_len for o in j.observations), default=0)
        rows.append(
            {
                "t_ns": None if at is None or t0 is None else at.t_ns - t0,
                "direction": j.direction,
                "kind": _KIND_WORDS.get(j.kind, j.kind),
                "bytes": size,
                "retransmission": j.retransmission,
                "points": points,
            }
        )
    return rows


def _exchange(path: Path, journeys: Sequence[Journey]) -> list[str]:
    if not journeys or not path.forward:
        return []
    anchor = path.forward[0].point
    rows = exchange_rows(journeys, anchor)
    retr = sum(1 for r in rows if r["retransmission"])
    out = [
        '<section id="exchange"><h2>Every packet of the connection</h2>',
        f"<p class='hint'>As the client's point ({_e(anchor)}) saw them, in the order sent;"
        " the ladder above follows the first packet each way."
        + (f" <b class='finding'>{_e(count(retr, 'retransmission'))}</b>." if retr else "")
        + "</p>",
        '<table class="exchange"><thead><tr><th>#</th><th>at (ms)</th><th>way</th>'
        "<th>packet</th><th class='num'>bytes</th><th>seen at</th></tr></thead><tbody>",
    ]
    for i, r in enumerate(rows, 1):
        way = "→ request" if r["direction"] == "forward" else "← reply"
        kind = r["kind"] + (
            f" (retransmission {r['retransmission']})" if r["retransmission"] else ""
        )
        cls = ' class="rewrite"' if r["retransmission"] else ""
        at = ms(r["t_ns"]) if r["t_ns"] is not None else f"not seen at {anchor}"
        out.append(
            f"<tr{cls}><td class='num'>{i}</td><td class='num'>{_e(at)}</td><td>{way}</td>"
            f"<td>{_e(kind)}</td><td class='num'>{r['bytes'] or ''}</td>"
            f"<td class='mono'>{_e(f' {ARROW} '.join(r['points']))}</td></tr>"
        )
    out.append("</tbody></table></section>")
    return out


def _dns(lookup: DnsLookup | None) -> list[str]:
    if lookup is None or not lookup.queries:
        return []
    if lookup.address is not None and lookup.answered_by is not None:
        head = f"{lookup.name} {ARROW} {lookup.address}"
        if lookup.elapsed_ns is not None:
            head += f" in {ms(lookup.elapsed_ns)} ms"
    else:
        rcodes = sorted({q.rcode or "no reply" for q in lookup.queries})
        head = f"{lookup.name}: not resolved ({', '.join(rcodes)})"
    out = [
        '<section id="dns"><h2>DNS lookup</h2>',
        f"<p><b>{_e(head)}</b> ({_e(count(len(lookup.queries), 'query', 'queries'))})</p>",
    ]
    if lookup.search:
        out.append(f"<p class='hint'>search list: {_e(' '.join(lookup.search))}</p>")
    out.append(
        '<table class="dns"><thead><tr><th>#</th><th>at (ms)</th><th>query</th><th>type</th>'
        "<th>rcode</th><th>answer</th><th>latency (ms)</th><th>asked → answered by</th></tr>"
        "</thead><tbody>"
    )
    start = lookup.queries[0].start_ns
    for i, q in enumerate(lookup.queries, 1):
        used = q is lookup.answered_by
        answer = ", ".join(q.answers) or ("(no records)" if q.rcode == "NOERROR" else "")
        server = f"{q.server} ({q.server_name})" if q.server_name else str(q.server)
        cls = ' class="used"' if used else ""
        bad = " bad" if q.rcode not in (None, "NOERROR") else ""
        out.append(
            f"<tr{cls}><td class='num'>{i}</td><td class='num'>{_e(ms(q.start_ns - start))}</td>"
            f"<td class='mono'>{_e(q.name)}{' ✓' if used else ''}</td><td>{_e(q.qtype)}</td>"
            f"<td class='rcode{bad}'>{_e(q.rcode or 'no reply')}</td><td class='mono'>{_e(answer)}</td>"
            f"<td class='num'>{_e(ms(q.latency_ns))}</td>"
            f"<td class='mono'>{_e(f'{q.asked} {ARROW} {server}')}</td></tr>"
        )
    out.append("</tbody></table>")
    if lookup.answered_by is not None:
        out.append("<p class='hint'>✓ the answer that resolved the name</p>")
    out.append("</section>")
    return out


def _evidence(path: Path, evidence: PathEvidence | None) -> list[str]:
    if evidence is None or (not evidence.rewrites and not evidence.findings):
        return []
    out = [
        '<section id="evidence"><h2>Rule evidence</h2>',
        "<p class='hint'>Which kube-proxy rule or conntrack entry made each rewrite; open one"
        " for the deciding rules, and inside it every rule walked.</p>",
    ]
    shown: set[object] = set()
    for ev in evidence.rewrites:
        lines = compact_lines(path, ev)
        bad = " bad" if ev.findings else ""
        out.append(f'<details class="evidence{bad}"><summary>{_e(lines[0])}</summary>')
        out.append(f"<pre>{_e(chr(10).join(line[2:] for line in lines[1:]))}</pre>")
        walked = evidence_lines(path, ev)[1:]
        if walked:
            out.append("<details class='walk'><summary>every rule walked</summary>")
            out.append(f"<pre>{_e(chr(10).join(line[2:] for line in walked))}</pre></details>")
        out.append("</details>")
        shown.update(ev.findings)
    for f in evidence.findings:
        if f not in shown:
            out.append(f'<p class="finding">FINDING ({_e(f.kind)}): {_e(f.message)}</p>')
    out.append("</section>")
    return out


def _request(report: Report, path: Path) -> list[str]:
    out = _header(report, path)
    out += _findings(report.findings)
    out += [
        '<section id="ladder"><h2>Path</h2>',
        '<p class="hint">Every capture point that saw the request\'s first packet, and its first'
        " reply on the way back; rewrites marked where they happen.</p>",
        '<div class="scroll">',
        render_svg(path, titled=False).strip(),
        "</div></section>",
    ]
    out += _waterfall(path)
    tcp = path.request.protocol == "tcp"
    icmp = answered_by_icmp(path)
    fwd = "Forward path" + (" (SYN)" if tcp and not path.stitches else "")
    rev = "Return path" + (" (SYN-ACK)" if tcp and not path.stitches else "")
    if icmp:
        rev = "Return path (an ICMP error came back instead of a reply)"
    out += ['<section id="hops"><h2>Hops</h2>']
    out += _hops_table(fwd, path.forward, "no packet of the request was seen")
    out += _hops_table(rev, path.reverse, "no reply was seen at any capture point")
    out.append("</section>")
    out += _exchange(path, report.journeys)
    out += _dns(report.dns)
    if path.clocks:
        out.append('<section id="clocks"><h2>Clocks</h2><ul>')
        out += [f"<li>{_e(clock_text(c))}</li>" for c in path.clocks]
        out.append("</ul><p class='hint'>reference time = node time − offset</p></section>")
    out += _evidence(path, report.evidence)
    if report.story:
        out += [
            '<section id="story"><h2>Step by step</h2><details open><summary>explain</summary>',
            f"<pre>{_e(report.story)}</pre></details></section>",
        ]
    if path.warnings or path.notes:
        out.append('<section id="warnings"><h2>Warnings</h2>')
        if path.warnings:
            out.append("<ul>" + "".join(f"<li>{_e(ms_words(w))}</li>" for w in path.warnings))
            out.append("</ul>")
        else:
            out.append("<p class='hint'>none</p>")
        if path.notes:
            out.append(
                f"<details><summary>{_e(count(len(path.notes), 'note'))} about the captures</summary><ul>"
            )
            out += [f"<li>{_e(n)}</li>" for n in path.notes]
            out.append("</ul></details>")
        out.append("</section>")
    return out


# --- the many-connection view -------------------------------------------------------------------


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
        f'<span class="oc oc-{_e(k)}">{_e(v)} {_e(k)}</span>' for k, v in outcomes.items() if v
    ]
    head = count(int(summary.get("connections", 0)), "connection")
    out.append(f"<p class='counts'><b>{_e(head)}</b>: {', '.join(parts) or 'none'}")
    lat = summary.get("latency") or {}
    if isinstance(lat.get("p50_ns"), int):
        times = (f"{k[:-3]} {_e(_ms_or_dash(lat.get(k)))} ms" for k in _PCT)
        out.append(" · total time " + " · ".join(times))
    out.append("</p>")
    if summary.get("hidden"):
        out.append(
            f"<p class='hint'>{_e(count(int(summary['hidden']), 'link-local/multicast exchange'))}"
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
                f"<tr><td class='mono'>{_e(g.get('name', ''))}</td>"
                f"<td class='num'>{_e(g.get('connections', ''))}</td>"
                f"<td class='num{bad}'>{_e(g.get('failed', ''))}</td>"
                + "".join(f"<td class='num'>{_e(_ms_or_dash(g.get(k)))}</td>" for k in _PCT)
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


def _connections(report: Report) -> list[str]:
    listing = report.listing
    if listing is None:
        return []
    n = len(listing.get("connections") or [])
    return [
        '<section id="connections">',
        f"<h2>Every connection ({_e(count(n, 'connection'))})</h2>",
        *_triage(listing.get("summary") or {}),
        *([f"<p class='capped'>{_e(report.listing_note)}</p>"] if report.listing_note else []),
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


# --- the document -------------------------------------------------------------------------------


def render_html(report: Report) -> str:
    """The whole report as one HTML document."""
    path = report.path
    if report.title:
        title = report.title
    elif path is not None:
        r = path.request
        title = f"{r.protocol} {r.client} {ARROW} {r.destination}"
    else:
        title = report.source
    nav = []
    if path is not None:
        nav += [("ladder", "Path"), ("waterfall", "Latency"), ("hops", "Hops")]
        if report.journeys:
            nav.append(("exchange", "Packets"))
        if report.dns is not None and report.dns.queries:
            nav.append(("dns", "DNS"))
        if report.evidence is not None and report.evidence.rewrites:
            nav.append(("evidence", "Rules"))
    if report.findings:
        nav.insert(0, ("findings", "Findings"))
    if report.listing is not None:
        nav.append(("connections", "Connections"))
    body: list[str] = []
    if path is not None:
        body += _request(report, path)
    else:
        body += _findings(report.findings)
    body += _connections(report)
    version = f" {report.version}" if report.version else ""
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f'<meta name="generator" content="pathtrace{_e(version)}">',
        f"<title>pathtrace: {_e(title)}</title>",
        f"<style>{_asset('report.css')}</style>",
        "</head><body>",
        f'<div class="top"><span class="brand">pathtrace</span> <span class="src">'
        f"{_e(report.source)}</span>",
        "<nav>" + " ".join(f'<a href="#{k}">{_e(v)}</a>' for k, v in nav) + "</nav></div>",
        "<main>",
        *body,
        "</main>",
        f"<footer>pathtrace{_e(version)} · {_e(report.source)} · data: the"
        f" <code>pathtrace-data</code> element ({SCHEMA})</footer>",
        f'<script type="application/json" id="pathtrace-data">{_script_json(report_data(report))}'
        "</script>",
        f"<script>{_asset('report.js')}</script>",
        "</body></html>",
    ]
    return "\n".join(out) + "\n"

"""The report's embedded JSON (schema `pathtrace-html/v1`): the traced request, the findings,
the listing column by column with repeated strings numbered once, and the precomputed paths of
listed connections, so that 10,000 connections stay a few hundred KB.

Pure: data in, data out.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from tracer.correlate.legs import is_proxy
from tracer.model import Hop, Path
from tracer.report.html.page import Report
from tracer.report.json import path_json
from tracer.report.listing import CSV_FIELDS
from tracer.report.mermaid import rewrite_words
from tracer.report.svg import changed_tuples
from tracer.report.table import answered_by_icmp

SCHEMA = "pathtrace-html/v1"


# The listing's columns kept in the embedded data, in the listing's order: every one but those
# the page does not show (the points each connection crossed, the slowest segment, the L7 status)
# and `outcome_by_point`, which CSV splits out of `outcome_by` (kept whole here).
_NOT_EMBEDDED = frozenset(
    (
        "outcome_by_point",
        "points",
        "slowest_segment",
        "slowest_segment_ns",
        "http_status",
        "dns_rcode",
    )
)
LIST_COLUMNS = tuple(c for c in CSV_FIELDS if c not in _NOT_EMBEDDED)


_TIMES = ("connect_ns", "server_ns", "total_ns")


def endpoint_parts(text: str) -> tuple[str, int | None]:
    """ "10.244.1.2:53404" -> ("10.244.1.2", 53404); "[fd00::1]:80" -> ("[fd00::1]", 80)."""
    host, sep, port = text.rpartition(":")
    if sep and port.isdigit() and (not host.count(":") or host.endswith("]")):
        return host, int(port)
    return text, None


def flat(value: Any) -> Any:
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
        values = [flat(r.get(c)) for r in rows]
        if c == "start_ns":
            cols["start_us"] = [None if v is None else (v - t0) // 1000 for v in values]
        elif c in _TIMES:
            cols[c[:-3] + "_us"] = [None if v is None else round(v / 1000) for v in values]
        elif c in ("index", "retransmissions"):
            cols[c] = values
        elif c in ("client", "destination", "backend") and len(set(values)) > len(values) // 4:
            parts = [endpoint_parts(v) if isinstance(v, str) else (None, None) for v in values]
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


def script_json(doc: Mapping[str, Any]) -> str:
    # Inside <script> only "</" can end the element early; JSON allows "<\/".
    text = json.dumps(doc, ensure_ascii=False, separators=(",", ":"))
    return text.replace("</", "<\\/")

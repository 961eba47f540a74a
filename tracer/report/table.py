"""A path as text: the request, the forward and return hops, the latency, the clocks, the warnings.

Times are milliseconds with microsecond precision, relative to the first forward hop after clock
correction (as the `Hop`s carry them). A negative delay is never printed without a "!" and a
note, because it only means the clock estimate's error bound is larger than the delay.
Pure: takes a `Path`, returns a string.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from tabulate import tabulate

from tracer.model import ClockEstimate, Hop, Latency, Path, Translation, Tuple5

ARROW = "→"
NEGATIVE_MARK = "!"
NEGATIVE_NOTE = (
    f"{NEGATIVE_MARK} negative: the true delay is smaller than the clock offset's error bound"
)

# Which endpoint each NAT kind rewrites: DNAT the destination, SNAT the source; on replies the
# reverse (conntrack's reply tuple), so un-DNAT rewrites the source and un-SNAT the destination.
_REWRITES = {"DNAT": "dst", "SNAT": "src", "un-DNAT": "src", "un-SNAT": "dst"}


def ms(ns: int | None, *, signed: bool = False) -> str:
    """Nanoseconds as milliseconds with three decimals ("—" when unknown)."""
    if ns is None:
        return "—"
    text = f"{ns / 1e6:+.3f}" if signed else f"{ns / 1e6:.3f}"
    return text + (f" {NEGATIVE_MARK}" if ns < 0 else "")


def utc(ns: int) -> str:
    """Epoch nanoseconds as a UTC timestamp with microseconds."""
    sec, rem = divmod(int(ns), 1_000_000_000)
    return (
        datetime.fromtimestamp(sec, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")
        + f".{rem // 1000:06d} UTC"
    )


def flow(t: Tuple5) -> str:
    return f"{t.src} {ARROW} {t.dst}"


def translation_text(tr: Translation | None) -> str:
    """E.g. "DNAT 10.96.0.100:80 → 10.244.2.9:8080"; a combined kind gives one line per rewrite."""
    if tr is None:
        return ""
    parts = []
    for kind in tr.kind.split("+"):
        side = _REWRITES.get(kind)
        if side == "src":
            parts.append(f"{kind} {tr.before.src} {ARROW} {tr.after.src}")
        elif side == "dst":
            parts.append(f"{kind} {tr.before.dst} {ARROW} {tr.after.dst}")
    if not parts:  # an unknown kind: show the whole change rather than nothing
        return f"{tr.kind} {flow(tr.before)} {ARROW} {flow(tr.after)}"
    return "\n".join(parts)  # one rewrite per line keeps the column narrow


def _hop_rows(hops: Sequence[Hop], start: int) -> tuple[list[list[str]], bool]:
    rows = []
    negative = False
    prev: int | None = None
    for i, h in enumerate(hops):
        delta = None if prev is None else h.t_ns - prev
        negative |= delta is not None and delta < 0
        rows.append(
            [
                str(start + i),
                h.point,
                h.node or "",
                h.interface or "",
                h.direction or "",
                ms(h.t_ns),
                ms(delta, signed=True) if delta is not None else "",
                flow(h.tuple5),
                translation_text(h.translation),
            ]
        )
        prev = h.t_ns
    return rows, negative


_HOP_HEADERS = [
    "#",
    "point",
    "node",
    "interface",
    "dir",
    "time (ms)",
    "Δ (ms)",
    "tuple",
    "translation",
]
_HOP_ALIGN = ("right", "left", "left", "left", "left", "right", "right", "left", "left")


def _hops_section(title: str, hops: Sequence[Hop], start: int, empty: str) -> list[str]:
    if not hops:
        return [title, f"  {empty}"]
    rows, negative = _hop_rows(hops, start)
    table = tabulate(
        rows, headers=_HOP_HEADERS, tablefmt="simple", colalign=_HOP_ALIGN, disable_numparse=True
    )
    lines = [title, *table.splitlines()]
    if negative:
        lines.append(NEGATIVE_NOTE)
    return lines


def _latency_section(lat: Latency, tcp: bool) -> list[str]:
    lines = ["Latency"]
    summary = [
        ("server", lat.server_ns, "request in to reply out at the server"),
        ("total", lat.total_ns, "first request packet to last reply packet"),
    ]
    if tcp or lat.connect_ns is not None:
        summary.insert(0, ("connect", lat.connect_ns, "handshake (SYN to SYN-ACK) at the client"))
    rows = [[name, ms(v), "ms" if v is not None else "", why] for name, v, why in summary]
    lines += [
        "  " + line
        for line in tabulate(
            rows,
            tablefmt="plain",
            colalign=("left", "right", "left", "left"),
            disable_numparse=True,
        ).splitlines()
    ]
    if lat.segments:
        seg_rows = [
            [
                f"{s.from_point} {ARROW} {s.to_point}",
                ms(s.first_ns),
                ms(s.median_ns),
                str(s.packets),
            ]
            for s in lat.segments
        ]
        headers = ["segment", "first (ms)", "median (ms)", "packets"]
        align = ["left", "right", "right", "right"]
        if any(s.negative for s in lat.segments):
            # The correlator may flag a segment whose shown value was already clamped at zero.
            headers.append("note")
            align.append("left")
            for row, s in zip(seg_rows, lat.segments, strict=True):
                row.append(NEGATIVE_MARK if s.negative else "")
        table = tabulate(
            seg_rows, headers=headers, tablefmt="simple", colalign=align, disable_numparse=True
        )
        lines += ["", *("  " + line.rstrip() for line in table.splitlines())]
        if any(s.negative or s.first_ns < 0 or s.median_ns < 0 for s in lat.segments):
            lines.append("  " + NEGATIVE_NOTE)
    return lines


def clock_text(c: ClockEstimate) -> str:
    text = (
        f"{c.node} against {c.reference}: offset {ms(c.offset_ns, signed=True).rstrip(' !')} ms"
        f" ± {ms(c.error_bound_ns)} ms ({c.samples} sample{'s' if c.samples != 1 else ''}"
    )
    if c.drift_ppm is not None:
        text += f", drift {c.drift_ppm:+.2f} ppm"
    return text + ")"


def render_table(path: Path) -> str:
    """The whole report as text, ending with a newline."""
    r = path.request
    head = f"Request #{r.index}  {r.protocol}  {r.client} {ARROW} {r.destination}"
    if r.backend and r.backend != r.destination:
        head += f"  (backend {r.backend})"
    lines = [head]
    if r.summary:
        lines.append(f"  {r.summary}")
    if r.start_ns:
        lines.append(f"  started {utc(r.start_ns)}")
    tcp = r.protocol.lower() == "tcp"
    lines.append("")
    lines += _hops_section(
        "Forward path" + (" (SYN)" if tcp else " (first request packet)"),
        path.forward,
        1,
        "no packet of the request was seen",
    )
    lines.append("")
    lines += _hops_section(
        "Return path" + (" (SYN-ACK)" if tcp else " (first reply packet)"),
        path.reverse,
        1,
        "no reply was seen at any capture point",
    )
    lines.append("")
    lines += _latency_section(path.latency, tcp)
    if path.clocks:
        lines += ["", "Clocks (reference time = node time - offset)"]
        lines += [f"  {clock_text(c)}" for c in path.clocks]
    if path.warnings:
        lines += ["", "Warnings"]
        lines += [f"  - {w}" for w in path.warnings]
    return "\n".join(line.rstrip() for line in lines) + "\n"

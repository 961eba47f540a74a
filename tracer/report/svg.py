"""Render a `Path` as an SVG ladder diagram, and convert it to PNG with `rsvg-convert`.

One lane per capture point (path order), time flowing down, one compact row per sighting: its
clock-corrected time on the left, a dot on its point's lane with an arrow from the sighting
before, and, in a text column on the right (never on an arrow), where it was seen, the tuple
where it changed, and the rewrite (DNAT, SNAT, their undoing) or an L7 proxy's hand-over.
A request that went no further (no reply, or an ICMP error instead) is marked where it was last
seen. A legend closes the diagram. The SVG is self-contained (generic font families, no scripts,
no external references) and deterministic: the same Path gives the same bytes. `render_svg` is
pure; `svg_to_png` is the one edge (a subprocess).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence
from xml.sax.saxutils import escape

from tracer.correlate.legs import is_proxy
from tracer.errors import MissingPrerequisiteError, PathtraceError
from tracer.model import Hop, Path
from tracer.report.mermaid import participants, rewrite_words
from tracer.report.stitched import handoffs
from tracer.report.table import ARROW, answered_by_icmp, went_no_further

PAD = 16
TIME_W = 76  # the time column, left of the lanes
ROW_H = 22
GAP = 16  # between the way out and the way back
CHAR_W = 6.7  # DejaVu Sans Mono at 11 px
FONT = "DejaVu Sans Mono, Menlo, Consolas, monospace"
FORWARD = "#1f5fa8"
REVERSE = "#2e7d32"
REWRITE = "#c0392b"
PROXY = "#7b3fa0"
BREAK = "#c0392b"
MUTED = "#666"


def _t(text: str) -> str:
    return escape(text, {'"': "&quot;"})


def _where(h: Hop) -> str:
    iface = f" {h.interface}" if h.interface and h.role == "node" else ""
    return f"{h.point}{iface}"


def _proxy_labels(path: Path) -> tuple[dict[int, str], dict[int, str]]:
    """Short labels for the proxy hops (forward, reverse), by hop index."""
    fwd: dict[int, str] = {}
    rev: dict[int, str] = {}
    for h in handoffs(path):
        s = h.stitch
        if h.forward_hop is not None:
            took = f", {h.request_ns / 1e6:.3f} ms inside" if h.request_ns is not None else ""
            fwd[h.forward_hop] = (
                f"L7 proxy: #{s.client_leg} → #{s.server_leg}{took} ({s.confidence})"
            )
        if h.reverse_hop is not None:
            took = f", {h.response_ns / 1e6:.3f} ms inside" if h.response_ns is not None else ""
            rev[h.reverse_hop] = f"L7 proxy: #{s.server_leg} → #{s.client_leg}{took}"
    return fwd, rev


def changed_tuples(hops: Sequence[Hop]) -> list[str]:
    """Per hop, its tuple where it differs from the hop before (the first always), else ""."""
    out = []
    prev = None
    for h in hops:
        t = h.tuple5
        out.append(f"{t.src} {ARROW} {t.dst}" if prev is None or t != prev else "")
        prev = t
    return out


def _row_text(hops: tuple[Hop, ...], notes: dict[int, str]) -> list[tuple[str, str, str]]:
    """Per hop: (where, tuple shown or "", rewrite or proxy words)."""
    out = []
    for i, (h, shown) in enumerate(zip(hops, changed_tuples(hops), strict=True)):
        extra = notes.get(i, "") if is_proxy(h) else ""
        if h.translation is not None:
            extra = rewrite_words(h.translation)
        out.append((_where(h), shown, extra))
    return out


class _Ladder:
    """The geometry of one diagram; `draw` appends SVG elements to `out`."""

    def __init__(self, path: Path, head: int) -> None:
        self.path = path
        self.names = participants(path)
        self.cols = {n: i for i, n in enumerate(self.names)}
        longest = max((len(n) for n in self.names), default=6)
        self.lane_w = int(min(max(104, longest * 7.4 + 18), 200))
        self.x0 = PAD + TIME_W
        fwd_notes, rev_notes = _proxy_labels(path)
        self.fwd_text = _row_text(path.forward, fwd_notes)
        self.rev_text = _row_text(path.reverse, rev_notes)
        rows = [*self.fwd_text, *self.rev_text]
        self.where_w = int(max((len(w) for w, _, _ in rows), default=8) * CHAR_W) + 14
        self.text_x = self.x0 + self.lane_w * max(len(self.names), 1) + 10
        tail = max((len(s) + len(e) + 2 for _, s, e in rows), default=20)
        self.broken = went_no_further(path)
        self.icmp = answered_by_icmp(path)
        self.width = int(self.text_x + self.where_w + tail * CHAR_W + PAD)
        self.head = head  # the height of the title lines above the lane names
        self.top = head + 56

    def x(self, point: str) -> int:
        return self.x0 + self.lane_w // 2 + self.cols[point] * self.lane_w

    def draw(self, out: list[str]) -> int:
        """Every row; returns the y below the last one."""
        y = self.top
        y = self._rows(out, self.path.forward, self.fwd_text, y, reply=False)
        if self.broken:
            y = self._break_row(out, y)
        if self.path.reverse:
            sep = y - ROW_H // 2 + GAP // 2
            out.append(
                f'<line x1="{PAD}" y1="{sep}" x2="{self.width - PAD}" y2="{sep}" stroke="#e3e3e3"/>'
            )
            back = "ICMP error" if self.icmp else "reply"
            out.append(f'<text x="{PAD}" y="{sep + 11}" font-size="9" fill="{MUTED}">{back}</text>')
            y = self._rows(out, self.path.reverse, self.rev_text, y + GAP, reply=True)
        return y - ROW_H // 2

    def _rows(
        self,
        out: list[str],
        hops: tuple[Hop, ...],
        text: list[tuple[str, str, str]],
        y0: int,
        reply: bool,
    ) -> int:
        color = REVERSE if reply else FORWARD
        y = y0
        prev: Hop | None = None
        for h, (where, shown, extra) in zip(hops, text, strict=True):
            x = self.x(h.point)
            if prev is not None:
                px, py = self.x(prev.point), y - ROW_H
                if px == x:
                    a = f'x1="{x}" y1="{py + 5}" x2="{x}" y2="{y - 6}"'
                else:
                    step = 5 if x > px else -5
                    a = f'x1="{px + step}" y1="{py + 1}" x2="{x - step - (2 if x > px else -2)}" y2="{y - 1}"'
                out.append(
                    f'<line {a} stroke="{color}" stroke-width="1.5"'
                    f' marker-end="url(#pt-arrow{int(reply)})"/>'
                )
            if is_proxy(h):
                out.append(
                    f'<rect x="{x - 5}" y="{y - 5}" width="10" height="10" fill="{PROXY}"'
                    f' transform="rotate(45 {x} {y})"/>'
                )
            elif h.translation is not None:
                out.append(
                    f'<circle cx="{x}" cy="{y}" r="6" fill="#fdecea" stroke="{REWRITE}"'
                    ' stroke-width="2"/>'
                )
                out.append(f'<circle cx="{x}" cy="{y}" r="2.5" fill="{REWRITE}"/>')
            else:
                out.append(f'<circle cx="{x}" cy="{y}" r="4" fill="{color}"/>')
            out.append(
                f'<text x="{self.x0 - 10}" y="{y + 4}" font-size="11" text-anchor="end"'
                f' fill="{color}">{h.t_ns / 1e6:.3f}</text>'
            )
            tx = self.text_x + self.where_w
            parts = [f'<tspan fill="#222">{_t(shown)}</tspan>'] if shown else []
            if extra:
                fill = PROXY if is_proxy(h) else REWRITE
                lead = "  " if shown else ""
                parts.append(f'<tspan fill="{fill}" font-weight="bold">{_t(lead + extra)}</tspan>')
            out.append(
                f'<text x="{self.text_x}" y="{y + 4}" font-size="11" fill="{color}">'
                f"{_t(where)}</text>"
            )
            if parts:
                out.append(
                    f'<text x="{tx}" y="{y + 4}" font-size="11" xml:space="preserve">'
                    f"{''.join(parts)}</text>"
                )
            prev = h
            y += ROW_H
        return y

    def _break_row(self, out: list[str], y: int) -> int:
        last = self.path.forward[-1]
        x = self.x(last.point)
        yc = y - 4
        out.append(
            f'<path d="M{x - 5} {yc - 5} L{x + 5} {yc + 5} M{x + 5} {yc - 5} L{x - 5} {yc + 5}"'
            f' stroke="{BREAK}" stroke-width="2.5"/>'
        )
        why = "an ICMP error came back instead" if self.icmp else "no reply at any capture point"
        out.append(
            f'<text x="{self.text_x}" y="{y}" font-size="11" font-weight="bold" fill="{BREAK}">'
            f"{_t(f'seen no further than {_where(last)}: {why}')}</text>"
        )
        return y + ROW_H


def _legend(out: list[str], y: int, ladder: _Ladder) -> None:
    x = PAD
    sw: list[tuple[str, str]] = []
    sw.append(
        (
            f'<line x1="{{x}}" y1="{y}" x2="{{x2}}" y2="{y}" stroke="{FORWARD}" stroke-width="1.5"'
            ' marker-end="url(#pt-arrow0)"/>',
            "request",
        )
    )
    if ladder.path.reverse:
        sw.append(
            (
                f'<line x1="{{x}}" y1="{y}" x2="{{x2}}" y2="{y}" stroke="{REVERSE}"'
                ' stroke-width="1.5" marker-end="url(#pt-arrow1)"/>',
                "ICMP error" if ladder.icmp else "reply",
            )
        )
    hops = (*ladder.path.forward, *ladder.path.reverse)
    if any(h.translation is not None for h in hops):
        sw.append(
            (
                f'<circle cx="{{xc}}" cy="{y}" r="6" fill="#fdecea" stroke="{REWRITE}"'
                ' stroke-width="2"/>',
                "rewritten here (NAT)",
            )
        )
    if any(is_proxy(h) for h in hops):
        sw.append(
            (
                f'<rect x="{{xl}}" y="{y - 5}" width="10" height="10" fill="{PROXY}"'
                f' transform="rotate(45 {{xc}} {y})"/>',
                "L7 proxy hand-over",
            )
        )
    if ladder.broken:
        sw.append(
            (
                f'<path d="M{{xl}} {y - 5} L{{xr}} {y + 5} M{{xr}} {y - 5} L{{xl}} {y + 5}"'
                f' stroke="{BREAK}" stroke-width="2.5"/>',
                "last seen here",
            )
        )
    for shape, label in sw:
        out.append(shape.format(x=x, x2=x + 26, xc=x + 13, xl=x + 8, xr=x + 18))
        out.append(f'<text x="{x + 32}" y="{y + 4}" font-size="10" fill="#333">{_t(label)}</text>')
        x += 40 + int(len(label) * 6.1) + 18
    out.append(
        f'<text x="{PAD}" y="{y + 20}" font-size="10" fill="{MUTED}">'
        "times: ms since the request's first packet, clock-corrected; the tuple is shown where it"
        " changes</text>"
    )


def render_svg(path: Path, *, titled: bool = True) -> str:
    """The ladder diagram of the request's first packet out and its first reply, as SVG text.

    `titled=False` leaves out the request's title lines (for a page that already shows them).
    """
    ladder = _Ladder(path, 42 if titled else 0)
    y0 = ladder.head
    body: list[str] = []
    bottom = ladder.draw(body)
    legend_y = bottom + 28
    height = legend_y + 30
    width = max(ladder.width, 640)
    r = path.request
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}"'
        f' viewBox="0 0 {width} {height}" font-family="{FONT}">',
        "<defs>",
    ]
    for i, color in enumerate((FORWARD, REVERSE)):
        out.append(
            f'<marker id="pt-arrow{i}" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="6"'
            f' markerHeight="6" orient="auto-start-reverse"><path d="M0 0 L10 5 L0 10 z"'
            f' fill="{color}"/></marker>'
        )
    out.append("</defs>")
    out.append(f'<rect width="{width}" height="{height}" fill="white"/>')
    title = f"{r.protocol} {r.client} {ARROW} {r.destination}"
    if path.stitches:
        title += " via an L7 proxy"
    if r.backend and r.backend != r.destination:
        title += f"  (backend {r.backend})"
    if titled:
        out.append(f'<text x="{PAD}" y="22" font-size="14" font-weight="bold">{_t(title)}</text>')
    if titled and r.summary:
        out.append(f'<text x="{PAD}" y="40" font-size="11" fill="#555">{_t(r.summary)}</text>')
    roles = {h.point: h.role for h in (*path.forward, *path.reverse)}
    for n in ladder.names:
        x = ladder.x(n)
        out.append(
            f'<text x="{x}" y="{y0 + 22}" font-size="12" font-weight="bold" text-anchor="middle">'
            f"{_t(n)}</text>"
        )
        out.append(
            f'<text x="{x}" y="{y0 + 36}" font-size="10" text-anchor="middle" fill="{MUTED}">'
            f"{_t(roles.get(n, ''))}</text>"
        )
        out.append(
            f'<line x1="{x}" y1="{ladder.top - 12}" x2="{x}" y2="{bottom + 6}" stroke="#c8c8c8"'
            ' stroke-dasharray="3 3"/>'
        )
    out.append(
        f'<text x="{ladder.x0 - 10}" y="{y0 + 36}" font-size="10" text-anchor="end"'
        f' fill="{MUTED}">ms'
        "</text>"
    )
    out.append(
        f'<text x="{ladder.text_x}" y="{y0 + 36}" font-size="10" fill="{MUTED}">seen at</text>'
    )
    out.append(
        f'<text x="{ladder.text_x + ladder.where_w}" y="{y0 + 36}" font-size="10" fill="{MUTED}">'
        "tuple, rewrite</text>"
    )
    out += body
    _legend(out, legend_y, ladder)
    out.append("</svg>")
    return "\n".join(out) + "\n"


def svg_to_png(svg: str, out_path: str | os.PathLike[str]) -> None:
    """Write `svg` as a PNG with rsvg-convert (Debian/Ubuntu package librsvg2-bin)."""
    exe = shutil.which("rsvg-convert")
    if exe is None:
        raise MissingPrerequisiteError(
            "rsvg-convert is not installed; it turns the SVG ladder into a PNG",
            hint="install it: apt-get install librsvg2-bin (or write the .svg and open it in a browser)",
        )
    try:
        proc = subprocess.run(
            [exe, "--format", "png", "--output", os.fspath(out_path)],
            input=svg.encode("utf-8"),
            capture_output=True,
            timeout=60,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        raise PathtraceError(f"rsvg-convert failed: {e}") from e
    if proc.returncode != 0:
        msg = proc.stderr.decode("utf-8", "replace").strip() or f"exit code {proc.returncode}"
        raise PathtraceError(f"rsvg-convert could not write {os.fspath(out_path)}: {msg}")

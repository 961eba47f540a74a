"""Render a `Path` as an SVG ladder diagram, and convert it to PNG with `rsvg-convert`.

One column per capture point (path order), time flowing down (one row per sighting, in time
order, with its clock-corrected time), an arrow per hop carrying the tuple, and the rewrite
(DNAT, SNAT, their undoing) marked where it happens, and an L7 proxy's hand-over from one
connection to the next marked at the proxy with its own time. The SVG is self-contained (generic font
families, no scripts, no external references) and deterministic: the same Path gives the same
bytes. `render_svg` is pure; `svg_to_png` is the one edge (a subprocess).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from xml.sax.saxutils import escape

from tracer.errors import MissingPrerequisiteError, PathtraceError
from tracer.model import Hop, Path
from tracer.report.mermaid import participants, rewrite_words
from tracer.report.stitched import handoffs, is_proxy

COL_W = 230
ROW_H = 40
TOP = 92
LEFT = 40
FONT = "DejaVu Sans Mono, Menlo, Consolas, monospace"
FORWARD = "#1f5fa8"
REVERSE = "#2e7d32"
REWRITE = "#c0392b"
PROXY = "#7b3fa0"


def _x(col: int) -> int:
    return LEFT + COL_W // 2 + col * COL_W


def _t(text: str) -> str:
    return escape(text, {'"': "&quot;"})


def _hop_rows(
    out: list[str],
    hops: tuple[Hop, ...],
    cols: dict[str, int],
    row0: int,
    reply: bool,
    notes: dict[int, str] | None = None,
) -> int:
    color = REVERSE if reply else FORWARD
    row = row0
    prev: Hop | None = None
    for i, h in enumerate(hops):
        y = TOP + row * ROW_H
        x = _x(cols[h.point])
        where = f" {h.interface}" if h.interface and h.role == "node" else ""
        time = f"+{h.t_ns / 1e6:.3f} ms{where}"
        if prev is not None:
            px, py = _x(cols[prev.point]), y - ROW_H
            if px == x:
                out.append(
                    f'<path d="M{x} {py} C{x + 28} {py + 8} {x + 28} {y - 8} {x + 4} {y - 2}"'
                    f' fill="none" stroke="{color}" stroke-width="1.5" marker-end="url(#a{int(reply)})"/>'
                )
            else:
                end = x - 6 if x > px else x + 6
                out.append(
                    f'<line x1="{px}" y1="{py}" x2="{end}" y2="{y}" stroke="{color}"'
                    f' stroke-width="1.5" marker-end="url(#a{int(reply)})"/>'
                )
            mx = (px + x) // 2 if px != x else x + 34
            anchor = "middle" if px != x else "start"
            out.append(
                f'<text x="{mx}" y="{y - ROW_H // 2 - 3}" font-size="10" text-anchor="{anchor}"'
                f' fill="#333" stroke="white" stroke-width="3" paint-order="stroke">'
                f"{_t(str(h.tuple5))}</text>"
            )
        out.append(f'<circle cx="{x}" cy="{y}" r="3.5" fill="{color}"/>')
        tx = x - 8
        out.append(
            f'<text x="{tx}" y="{y + 4}" font-size="10" text-anchor="end" fill="{color}"'
            ' stroke="white" stroke-width="3" paint-order="stroke">'
            f"{_t(time)}</text>"
        )
        if is_proxy(h) and notes and i in notes:
            # The proxy's own time: a band across its column, between the two connections.
            label = notes[i]
            w = 7 * len(label) + 10
            out.append(
                f'<rect x="{x + 8}" y="{y - 9}" width="{w}" height="16" rx="3" fill="#f3e8fb"'
                f' stroke="{PROXY}"/>'
            )
            out.append(
                f'<text x="{x + 13}" y="{y + 3}" font-size="10" fill="{PROXY}">{_t(label)}</text>'
            )
        if h.translation is not None:
            label = rewrite_words(h.translation)
            w = 7 * len(label) + 10
            out.append(
                f'<rect x="{x + 8}" y="{y - 9}" width="{w}" height="16" rx="3" fill="#fdecea"'
                f' stroke="{REWRITE}"/>'
            )
            out.append(
                f'<text x="{x + 13}" y="{y + 3}" font-size="10" fill="{REWRITE}">{_t(label)}</text>'
            )
        prev = h
        row += 1
    return row


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


def render_svg(path: Path) -> str:
    """The ladder diagram of the request's first packet out and its first reply, as SVG text."""
    names = participants(path)
    cols = {n: i for i, n in enumerate(names)}
    roles = {h.point: h.role for h in (*path.forward, *path.reverse)}
    rows = len(path.forward) + len(path.reverse) + (1 if path.reverse else 0)
    width = LEFT * 2 + COL_W * max(len(names), 1) + 160
    height = TOP + rows * ROW_H + 40
    r = path.request
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}"'
        f' viewBox="0 0 {width} {height}" font-family="{FONT}">',
        "<defs>",
    ]
    for i, color in enumerate((FORWARD, REVERSE)):
        out.append(
            f'<marker id="a{i}" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7"'
            f' markerHeight="7" orient="auto-start-reverse"><path d="M0 0 L10 5 L0 10 z"'
            f' fill="{color}"/></marker>'
        )
    out.append("</defs>")
    out.append(f'<rect width="{width}" height="{height}" fill="white"/>')
    title = f"{r.protocol} {r.client} → {r.destination}"
    if path.stitches:
        title += " via an L7 proxy"
    if r.backend:
        title += f"  (backend {r.backend})"
    out.append(f'<text x="{LEFT}" y="24" font-size="14" font-weight="bold">{_t(title)}</text>')
    if r.summary:
        out.append(f'<text x="{LEFT}" y="42" font-size="11" fill="#555">{_t(r.summary)}</text>')
    bottom = height - 20
    for n in names:
        x = _x(cols[n])
        out.append(
            f'<text x="{x}" y="66" font-size="12" font-weight="bold" text-anchor="middle">'
            f"{_t(n)}</text>"
        )
        out.append(
            f'<text x="{x}" y="79" font-size="10" text-anchor="middle" fill="#666">'
            f"{_t(roles.get(n, ''))}</text>"
        )
        out.append(
            f'<line x1="{x}" y1="{TOP - 8}" x2="{x}" y2="{bottom}" stroke="#bbb"'
            ' stroke-dasharray="4 3"/>'
        )
    fwd_notes, rev_notes = _proxy_labels(path)
    row = _hop_rows(out, path.forward, cols, 0, reply=False, notes=fwd_notes)
    if path.reverse:
        _hop_rows(out, path.reverse, cols, row + 1, reply=True, notes=rev_notes)
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

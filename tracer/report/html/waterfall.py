"""The latency waterfall: one round trip, each piece a bar after the one before it (inline SVG),
with the clock bound where two clocks meet, and the latency table under it.

Pure: a `Path` in, HTML lines out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from tracer.correlate.legs import is_proxy
from tracer.model import Hop, Path, Segment
from tracer.report.html.page import esc
from tracer.report.table import ARROW, answered_by_icmp, ms

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


def waterfall_section(path: Path) -> list[str]:
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
        f"{esc(ms(total))} ms</text>"
    )
    for b in bars:
        w = max(b.ns, 0) * scale
        svg.append(
            f'<text x="{_W_LABEL - 8}" y="{y + 14}" text-anchor="end" class="wl">{esc(b.label)}</text>'
        )
        svg.append(
            f'<rect x="{_W_LABEL + x:.1f}" y="{y + 4}" width="{max(w, 1.5):.1f}" height="13"'
            f' class="wb {b.kind}"><title>{esc(b.label)}: {esc(ms(b.ns))} ms</title></rect>'
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
            f"{esc(ms(b.ns).rstrip(' !'))}{esc(bound)} ms{note}</text>"
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
        table.append(
            f"<tr><th>{name}</th><td class='num'>{esc(shown)}</td><td>{esc(why)}</td></tr>"
        )
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

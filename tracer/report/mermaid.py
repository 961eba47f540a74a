"""Render a `Path` as a Mermaid sequenceDiagram (paste it into Markdown on GitHub or GitLab).

One participant per capture point in path order, a Note where the request (and its reply) is
first seen, then one arrow per further forward and reverse hop with its clock-corrected time and
tuple, and a Note where a rewrite (DNAT, SNAT, their undoing) happens
and where an L7 proxy hands the request (or the response) on to its other connection.
Pure: Path in, text out; computes nothing the path does not hold.
"""

from __future__ import annotations

import re

from tracer.correlate.legs import is_proxy
from tracer.model import Hop, Path, Translation
from tracer.report.stitched import handoffs

_ID = re.compile(r"[^A-Za-z0-9_]")


def participants(path: Path) -> list[str]:
    """The capture points in the order the request first reaches them (reply-only ones last)."""
    seen: dict[str, None] = {}
    for h in (*path.forward, *reversed(path.reverse)):
        seen.setdefault(h.point, None)
    return list(seen)


def _pid(name: str) -> str:
    return "p_" + _ID.sub("_", name)


def _text(s: str) -> str:
    # Mermaid ends a message at a newline and treats ';' and '#' specially.
    return s.replace(";", ",").replace("#", "").replace("\n", " ")


def rewrite_words(tr: Translation) -> str:
    """ "DNAT 10.96.0.100:80 → 10.244.2.9:8080", one clause per rewritten side."""
    parts = []
    if tr.kind.startswith("un-"):
        # On a reply conntrack undoes the DNAT on the source and the SNAT on the destination.
        if tr.before.src != tr.after.src:
            parts.append(f"un-DNAT {tr.before.src} → {tr.after.src}")
        if tr.before.dst != tr.after.dst:
            parts.append(f"un-SNAT {tr.before.dst} → {tr.after.dst}")
    else:
        if tr.before.dst != tr.after.dst:
            word = "REDIRECT" if tr.kind == "REDIRECT" else "DNAT"
            parts.append(f"{word} {tr.before.dst} → {tr.after.dst}")
        if tr.before.src != tr.after.src:
            parts.append(f"SNAT {tr.before.src} → {tr.after.src}")
    return ", ".join(parts) or tr.kind


def _label(h: Hop) -> str:
    where = f" {h.interface}" if h.interface and h.role == "node" else ""
    return _text(f"+{h.t_ns / 1e6:.3f} ms{where}: {h.tuple5}")


def proxy_notes(path: Path) -> tuple[dict[int, str], dict[int, str]]:
    """What to say at each proxy hop (forward, reverse, by hop index): the connections the
    proxy joins, its own time there, and how sure the join is."""
    fwd: dict[int, str] = {}
    rev: dict[int, str] = {}
    for h in handoffs(path):
        s = h.stitch
        if h.forward_hop is not None:
            took = f" after {h.request_ns / 1e6:.3f} ms" if h.request_ns is not None else ""
            fwd[h.forward_hop] = (
                f"L7 proxy {s.proxy}: request of connection {s.client_leg} sent on as connection {s.server_leg}"
                f"{took} (confidence {s.confidence})"
            )
        if h.reverse_hop is not None:
            took = f" after {h.response_ns / 1e6:.3f} ms" if h.response_ns is not None else ""
            rev[h.reverse_hop] = (
                f"L7 proxy {s.proxy}: response of connection {s.server_leg} sent back on connection {s.client_leg}"
                f"{took}"
            )
    return fwd, rev


def _arrows(
    out: list[str], hops: tuple[Hop, ...], reply: bool, notes: dict[int, str] | None = None
) -> None:
    if not hops:
        return
    # The first sighting has no previous point to come from: a Note where it was first seen
    # (a self-arrow would read as a hop); the arrows start at the second sighting.
    arrow = "-->>" if reply else "->>"
    first = hops[0]
    what = "reply first seen" if reply else "request first seen"
    out.append(f"    Note over {_pid(first.point)}: {what} {_label(first)}")
    for i, (prev, h) in enumerate(zip(hops, hops[1:], strict=False), start=1):
        if is_proxy(h) and notes and i in notes:
            out.append(f"    Note over {_pid(h.point)}: {_text(notes[i])}")
        if h.translation is not None:
            out.append(f"    Note over {_pid(h.point)}: {_text(rewrite_words(h.translation))}")
        out.append(f"    {_pid(prev.point)}{arrow}{_pid(h.point)}: {_label(h)}")


def render_mermaid(path: Path) -> str:
    """A Mermaid sequenceDiagram of the request's first packet out and its first reply back."""
    r = path.request
    out = ["sequenceDiagram"]
    via = " via an L7 proxy" if path.stitches else ""
    backend = f" (backend {r.backend})" if path.stitches and r.backend else ""
    out.append(f"    title {_text(f'{r.protocol} {r.client} → {r.destination}{via}{backend}')}")
    roles = {h.point: h.role for h in (*path.forward, *path.reverse)}
    for name in participants(path):
        out.append(f"    participant {_pid(name)} as {_text(name)} ({roles.get(name, '?')})")
    fwd_notes, rev_notes = proxy_notes(path)
    _arrows(out, path.forward, reply=False, notes=fwd_notes)
    _arrows(out, path.reverse, reply=True, notes=rev_notes)
    return "\n".join(out) + "\n"

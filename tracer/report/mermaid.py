"""Render a `Path` as a Mermaid sequenceDiagram (paste it into Markdown on GitHub or GitLab).

One participant per capture point in path order, one arrow per forward and reverse hop with its
clock-corrected time and tuple, and a Note where a rewrite (DNAT, SNAT, their undoing) happens.
Pure: Path in, text out; computes nothing the path does not hold.
"""

from __future__ import annotations

import re

from tracer.model import Hop, Path, Translation

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
            parts.append(f"DNAT {tr.before.dst} → {tr.after.dst}")
        if tr.before.src != tr.after.src:
            parts.append(f"SNAT {tr.before.src} → {tr.after.src}")
    return ", ".join(parts) or tr.kind


def _label(h: Hop) -> str:
    where = f" {h.interface}" if h.interface and h.role == "node" else ""
    return _text(f"+{h.t_ns / 1e6:.3f} ms{where}: {h.tuple5}")


def _arrows(out: list[str], hops: tuple[Hop, ...], reply: bool) -> None:
    if not hops:
        return
    # The first sighting has no sender; show it as the point talking to itself.
    arrow = "-->>" if reply else "->>"
    first = hops[0]
    out.append(f"    {_pid(first.point)}{arrow}{_pid(first.point)}: {_label(first)}")
    for prev, h in zip(hops, hops[1:], strict=False):
        if h.translation is not None:
            out.append(f"    Note over {_pid(h.point)}: {_text(rewrite_words(h.translation))}")
        out.append(f"    {_pid(prev.point)}{arrow}{_pid(h.point)}: {_label(h)}")


def render_mermaid(path: Path) -> str:
    """A Mermaid sequenceDiagram of the request's first packet out and its first reply back."""
    r = path.request
    out = ["sequenceDiagram"]
    out.append(f"    title {_text(f'{r.protocol} {r.client} → {r.destination}')}")
    roles = {h.point: h.role for h in (*path.forward, *path.reverse)}
    for name in participants(path):
        out.append(f"    participant {_pid(name)} as {_text(name)} ({roles.get(name, '?')})")
    _arrows(out, path.forward, reply=False)
    _arrows(out, path.reverse, reply=True)
    return "\n".join(out) + "\n"

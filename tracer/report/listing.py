"""The `--list` view: one line per connection found in the captures.

Pure: takes the correlator's `Connection`s (and summaries read elsewhere), returns a string.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from tabulate import tabulate

from tracer.model import Connection

ARROW = "→"
_MAX_POINTS_SHOWN = 4


def _points(c: Connection) -> str:
    names = list(c.points)
    shown = ", ".join(names[:_MAX_POINTS_SHOWN])
    if len(names) > _MAX_POINTS_SHOWN:
        shown += f", +{len(names) - _MAX_POINTS_SHOWN}"
    return f"{len(names)}: {shown}"


def render_list(
    connections: Sequence[Connection], summaries: Mapping[int, str] | None = None
) -> str:
    """A table with one row per connection, ending with a newline."""
    s = summaries or {}
    rows = [
        [
            str(c.index),
            c.protocol,
            f"{c.client.src} {ARROW} {c.client.dst}",
            str(c.backend) if c.backend is not None and c.backend != c.client.dst else "",
            _points(c),
            s.get(c.index) or c.summary,
        ]
        for c in connections
    ]
    table = tabulate(
        rows,
        headers=["#", "proto", "client → destination", "backend", "points", "summary"],
        tablefmt="simple",
        colalign=("right", "left", "left", "left", "left", "left"),
        disable_numparse=True,
    )
    return "\n".join(line.rstrip() for line in table.splitlines()) + "\n"

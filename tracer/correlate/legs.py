"""The legs of a stitched path: the path cut at its L7 proxy hops, one `Path` per connection.

A path whose request crossed an L7 proxy (`Path.stitches`) follows the request's first data
packet and its response through every leg, with a hop of kind "proxy" where the proxy sent the
request (forward) or the response (reverse) on. Pure reshaping of a built path: nothing is
computed that the path does not hold, and nothing is rendered.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from tracer.model import Hop, Path


def is_proxy(hop: Hop) -> bool:
    return hop.kind == "proxy"


def proxy_indexes(hops: tuple[Hop, ...]) -> list[int]:
    """Where the proxy hops sit in `hops` (a first hop never starts a new leg)."""
    return [i for i, h in enumerate(hops) if is_proxy(h) and i > 0]


@dataclass(frozen=True)
class LegPath:
    """One leg of a stitched path as a path of its own, and where its hops sit in the whole."""

    path: Path
    forward_offset: int
    reverse_offset: int


def leg_paths(path: Path) -> tuple[LegPath, ...]:
    """The path cut at its proxy hops: one `LegPath` per connection, client first.

    A path without stitches is its own single leg. Each leg keeps the whole path's request,
    clocks and points; its first hop (the proxy sending) is an ordinary hop of that leg.
    """
    if not path.stitches:
        return (LegPath(path, 0, 0),)
    fcuts = [0, *proxy_indexes(path.forward), len(path.forward)]
    rcuts = [0, *proxy_indexes(path.reverse), len(path.reverse)]
    legs = len(fcuts) - 1
    fwd_parts = [(path.forward[a:b], a) for a, b in zip(fcuts, fcuts[1:], strict=False)]
    rev_parts = [(path.reverse[a:b], a) for a, b in zip(rcuts, rcuts[1:], strict=False)]
    # The reverse parts run server leg first; a response that stopped early leaves the client
    # legs (the last parts) without one.
    rev_parts += [((), len(path.reverse))] * (legs - len(rev_parts))
    rev_parts.reverse()
    out: list[LegPath] = []
    for i, (fwd, fo) in enumerate(fwd_parts):
        rev, ro = rev_parts[i] if i < len(rev_parts) else ((), len(path.reverse))
        leg = replace(
            path,
            forward=tuple(_plain(h, j == 0) for j, h in enumerate(fwd)),
            reverse=tuple(_plain(h, j == 0) for j, h in enumerate(rev)),
            stitches=(),
        )
        out.append(LegPath(leg, fo, ro))
    return tuple(out)


def _plain(hop: Hop, first: bool) -> Hop:
    return replace(hop, kind="packet") if first and is_proxy(hop) else hop

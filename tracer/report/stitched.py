"""Where a stitched path crosses its L7 proxies: the proxy hops and the legs between them.

A path whose request crossed an L7 proxy (`Path.stitches`) follows the request's first data
packet and its response through every leg, with a hop of kind "proxy" where the proxy sent the
request (forward) or the response (reverse) on. This module finds those hops and cuts the path
into one `Path` per leg (for the per-leg rule evidence), so that every renderer reads them the
same way. Pure reshaping: it computes nothing the path does not hold beyond differences of
the hops' own times.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from tracer.model import Hop, Path, Stitch, Tuple5


@dataclass(frozen=True)
class Handoff:
    """One stitch placed on the path.

    `forward_hop`/`reverse_hop` index the proxy hop in `path.forward`/`path.reverse` (None when
    that side was not seen); `request_ns`/`response_ns` are the proxy's own time on each side
    (the proxy hop's time minus the hop before it, both at the proxy's point);
    `client_tuple` is the request as the proxy received it, `server_tuple` as it sent it on.
    """

    stitch: Stitch
    forward_hop: int | None
    reverse_hop: int | None
    request_ns: int | None
    response_ns: int | None
    client_tuple: Tuple5 | None
    server_tuple: Tuple5 | None


def is_proxy(hop: Hop) -> bool:
    return hop.kind == "proxy"


def _proxy_indexes(hops: tuple[Hop, ...]) -> list[int]:
    return [i for i, h in enumerate(hops) if is_proxy(h) and i > 0]


def handoffs(path: Path) -> tuple[Handoff, ...]:
    """The path's stitches in path order, each with where it shows on the hops."""
    if not path.stitches:
        return ()
    fwd = _proxy_indexes(path.forward)
    # The response crosses the proxies in the opposite order: the last stitch first.
    seen: list[int | None] = list(reversed(_proxy_indexes(path.reverse)))
    n = len(path.stitches)
    # A response that stopped early crossed only the last proxies: the first ones have none.
    rev = [*([None] * (n - len(seen))), *seen] if len(seen) < n else seen[-n:]
    out: list[Handoff] = []
    for i, s in enumerate(path.stitches):
        f = fwd[i] if i < len(fwd) else None
        r = rev[i]
        req = path.forward[f].t_ns - path.forward[f - 1].t_ns if f is not None else None
        resp = path.reverse[r].t_ns - path.reverse[r - 1].t_ns if r is not None else None
        out.append(
            Handoff(
                stitch=s,
                forward_hop=f,
                reverse_hop=r,
                request_ns=req,
                response_ns=resp,
                client_tuple=path.forward[f - 1].tuple5 if f is not None else None,
                server_tuple=path.forward[f].tuple5 if f is not None else None,
            )
        )
    return tuple(out)


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
    fcuts = [0, *_proxy_indexes(path.forward), len(path.forward)]
    rcuts = [0, *_proxy_indexes(path.reverse), len(path.reverse)]
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

"""Where a stitched path crosses its L7 proxies: each stitch placed on the proxy hops.

Every renderer reads the proxy hand-overs of a stitched path (`Path.stitches`) the same way
through `handoffs`; the legs between them are `tracer.correlate.legs`. Pure reshaping: it
computes nothing the path does not hold beyond differences of the hops' own times.
"""

from __future__ import annotations

from dataclasses import dataclass

from tracer.correlate.legs import proxy_indexes
from tracer.model import Path, Stitch, Tuple5


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


def handoffs(path: Path) -> tuple[Handoff, ...]:
    """The path's stitches in path order, each with where it shows on the hops."""
    if not path.stitches:
        return ()
    fwd = proxy_indexes(path.forward)
    # The response crosses the proxies in the opposite order: the last stitch first.
    seen: list[int | None] = list(reversed(proxy_indexes(path.reverse)))
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

"""Clock offsets between capture hosts, from packets matched in both directions.

Points on one node share a clock (a "domain"). For two domains A and B, with θ = B's clock minus
A's, a packet going A→B gives θ ≤ t_B − t_A and one going B→A gives θ ≥ t_B − t_A, because no
one-way delay is negative (reference/correlation.md section 2.2). The estimate is the middle of
the interval and the error bound its half-width. Domains are related to the reference along a
spanning tree of the tightest pairs (section 2.5). Pure: arrays in, numbers out; no drift fit.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from tracer.model import ClockEstimate

I64 = npt.NDArray[np.int64]
_BIG = np.iinfo(np.int64).max
_SMALL = np.iinfo(np.int64).min


@dataclass(frozen=True)
class PairBounds:
    """What the matched packets say about θ = clock(b) − clock(a)."""

    a: int
    b: int
    upper: int | None  # θ ≤ upper (packets a→b)
    lower: int | None  # θ ≥ lower (packets b→a)
    n_upper: int
    n_lower: int

    @property
    def two_way(self) -> bool:
        return self.upper is not None and self.lower is not None

    @property
    def estimate(self) -> int:
        if self.upper is not None and self.lower is not None:
            return (self.upper + self.lower) // 2
        # One way only: assume the fastest packet took no time (delays >= 0).
        return self.upper if self.upper is not None else int(self.lower or 0)

    @property
    def bound(self) -> int:
        if self.upper is not None and self.lower is not None:
            return abs(self.upper - self.lower + 1) // 2
        return -1


def pair_bounds(
    tmin: I64,
    tmax: I64,
    present: npt.NDArray[np.bool_],
    forward: npt.NDArray[np.bool_],
    conn: I64,
    conn_rank: I64,
    n_conn: int,
) -> list[PairBounds]:
    """Bounds for every pair of domains seen together by at least one packet.

    `tmin`/`tmax`/`present` are (journeys × domains): the first and last raw time of each packet
    in each domain. `conn_rank` (connections × domains) is the smallest role rank of the points
    of that domain that saw the connection (the client's side 0, the middle 1, the server 2): a
    forward packet crosses a lower rank first. Where ranks tie (two nodes, a node and a point on
    the underlay) the data decides: with packets both ways only the true order leaves a
    non-empty interval for θ (the other would need negative delays in both directions).
    Connections where neither ranks nor data decide are left out.
    """
    out: list[PairBounds] = []
    n_dom = present.shape[1]
    for a in range(n_dom):
        for b in range(a + 1, n_dom):
            both = present[:, a] & present[:, b]
            if not both.any():
                continue
            idx = np.flatnonzero(both)
            c = conn[idx]
            fwd = forward[idx]
            up = tmin[idx, b] - tmax[idx, a]  # a packet a→b: θ ≤ up
            lo = tmax[idx, b] - tmin[idx, a]  # a packet b→a: θ ≥ lo
            hi1 = _reduce_min(up, c, fwd, n_conn)  # hypothesis 1: forward goes a→b
            lo1 = _reduce_max(lo, c, ~fwd, n_conn)
            hi2 = _reduce_min(up, c, ~fwd, n_conn)  # hypothesis 2: forward goes b→a
            lo2 = _reduce_max(lo, c, fwd, n_conn)
            ok1 = hi1 >= lo1
            ok2 = hi2 >= lo2
            decided = ok1 != ok2
            # Neither fits (a wrong match, drift or a step): take the smaller contradiction.
            viol1 = np.where(ok1, 0, lo1 - hi1)
            viol2 = np.where(ok2, 0, lo2 - hi2)
            neither = ~ok1 & ~ok2
            by_rank = conn_rank[:, a] < conn_rank[:, b]
            tie = conn_rank[:, a] == conn_rank[:, b]
            by_data = np.where(decided, ok1, viol1 <= viol2)
            a_first = np.where(tie, by_data, by_rank)
            usable = ~tie | decided | neither
            keep = usable[c]
            goes_ab = (fwd == a_first[c]) & keep
            goes_ba = (fwd != a_first[c]) & keep
            upper = int(up[goes_ab].min()) if goes_ab.any() else None
            lower = int(lo[goes_ba].max()) if goes_ba.any() else None
            n_up, n_lo = int(goes_ab.sum()), int(goes_ba.sum())
            if upper is None and lower is None:
                continue
            out.append(PairBounds(a, b, upper, lower, n_up, n_lo))
    return out


def _reduce_min(values: I64, groups: I64, mask: npt.NDArray[np.bool_], n: int) -> I64:
    out = np.full(n, _BIG, dtype=np.int64)
    np.minimum.at(out, groups[mask], values[mask])
    return out


def _reduce_max(values: I64, groups: I64, mask: npt.NDArray[np.bool_], n: int) -> I64:
    out = np.full(n, _SMALL, dtype=np.int64)
    np.maximum.at(out, groups[mask], values[mask])
    return out


@dataclass(frozen=True)
class ClockSolution:
    offsets: tuple[int, ...]  # per domain: domain clock − reference clock (0 if unrelated)
    related: tuple[bool, ...]
    estimates: tuple[ClockEstimate, ...]
    warnings: tuple[str, ...]


def solve(names: list[str], reference: int, pairs: list[PairBounds]) -> ClockSolution:
    """Offsets of every domain against the reference along the tightest spanning tree (Prim)."""
    n = len(names)
    offsets = [0] * n
    bounds = [0] * n
    samples = [0] * n
    related = [False] * n
    related[reference] = True
    warnings: list[str] = []
    for p in pairs:
        if p.two_way and p.upper is not None and p.lower is not None and p.upper < p.lower:
            warnings.append(
                f"clocks {names[p.a]} and {names[p.b]}: the matched packets disagree by "
                f"{p.lower - p.upper} ns (drift, a clock step, or a wrong match); "
                f"using the midpoint"
            )

    def weight(p: PairBounds) -> float:
        return float(p.bound) if p.two_way else float("inf")

    while True:
        best: tuple[float, PairBounds, int, int] | None = None
        for p in pairs:
            for src, dst in ((p.a, p.b), (p.b, p.a)):
                if related[src] and not related[dst]:
                    w = weight(p)
                    if best is None or w < best[0]:
                        best = (w, p, src, dst)
        if best is None:
            break
        _, p, src, dst = best
        theta = p.estimate if dst == p.b else -p.estimate
        offsets[dst] = offsets[src] + theta
        if p.two_way and bounds[src] >= 0:
            bounds[dst] = bounds[src] + p.bound
        else:
            bounds[dst] = -1
        samples[dst] = p.n_upper + p.n_lower
        related[dst] = True
        if not p.two_way:
            warnings.append(
                f"clock {names[dst]}: packets were matched in one direction only against "
                f"{names[src]}; its offset is a bound that assumes the fastest packet took no "
                f"time"
            )
    estimates = []
    for i in range(n):
        if i == reference:
            continue
        if not related[i]:
            warnings.append(
                f"clock {names[i]}: no packet was matched with the reference clock "
                f"{names[reference]}; its times are not corrected"
            )
            continue
        estimates.append(
            ClockEstimate(names[i], names[reference], offsets[i], bounds[i], samples[i])
        )
    return ClockSolution(tuple(offsets), tuple(related), tuple(estimates), tuple(warnings))

"""Clock offsets between capture hosts, from packets matched in both directions.

Points on one node share a clock (a "domain"). For two domains A and B, with θ = B's clock minus
A's, a packet going A→B gives θ ≤ t_B − t_A and one going B→A gives θ ≥ t_B − t_A, because no
one-way delay is negative (reference/correlation.md section 2.2). The estimate is the middle of
the interval and the error bound its half-width. Domains are related to the reference along a
spanning tree of the tightest pairs (section 2.5); pairs outside the tree check that composing
around a cycle agrees within the bounds.

On long captures (section 2.4) θ drifts: θ(t) = θ0 + ρ·t. Then each direction's one-way delays
are fitted with the line under them (an edge of their lower convex hull, found on windowed
minima), θ is the middle of the two lines and ρ half the difference of their slopes. A clock
step shows as a level shift of the windowed two-way estimate: the samples are split there and
each side fitted on its own. Pure: arrays in, numbers out.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import numpy.typing as npt

from tracer.correlate import kernels
from tracer.model import ClockEstimate

I64 = npt.NDArray[np.int64]
_BIG = np.iinfo(np.int64).max
_SMALL = np.iinfo(np.int64).min


# Below this span a drift is lost in the delay noise: a constant offset is the better model
# (100 ppm over 10 s is 1 ms; NTP-disciplined clocks drift under 1 ppm).
MIN_FIT_SPAN_NS = 10_000_000_000
# Windowed minima (Paxson): enough windows to see a step, each holding enough packets.
FIT_WINDOWS = 128
# NTP/chrony step a clock only beyond 128 ms; delay noise on one link is far below 1 ms.
MIN_STEP_NS = 1_000_000
MAX_STEPS = 4
# No clock slews faster than this (ntpd's limit): a faster "drift" is a wrong match.
MAX_RATE = 500e-6


@dataclass(frozen=True)
class Fit:
    """θ(t) of one pair, piecewise: θ = offsets[k] + rates[k]·(t − pivots[k]) from starts[k].

    `t` is on clock a; `bounds[k]` is the half-width at the pivot; `steps` the clock steps
    found, as (time on clock a, size in ns).
    """

    starts: tuple[int, ...]
    offsets: tuple[int, ...]
    rates: tuple[float, ...]
    pivots: tuple[int, ...]
    bounds: tuple[int, ...]
    steps: tuple[tuple[int, int], ...] = ()
    skew_mismatch: float = 0.0  # |α_f + α_r|: forward and reverse slopes should cancel
    spans: tuple[int, ...] = ()  # samples behind each segment

    def at(self, t: I64) -> I64:
        t = np.asarray(t, dtype=np.int64)
        k = np.searchsorted(np.array(self.starts, dtype=np.int64), t, side="right") - 1
        k = np.clip(k, 0, len(self.starts) - 1)
        off = np.array(self.offsets, dtype=np.int64)[k]
        rate = np.array(self.rates, dtype=np.float64)[k]
        piv = np.array(self.pivots, dtype=np.int64)[k]
        return off + np.rint(rate * (t - piv).astype(np.float64)).astype(np.int64)

    def scalar(self, t: int) -> int:
        return int(self.at(np.array([t], dtype=np.int64))[0])

    @property
    def main(self) -> int:
        """The segment holding the most time (its estimate stands for the pair)."""
        if len(self.starts) == 1 or len(self.spans) != len(self.starts):
            return 0
        return max(range(len(self.starts)), key=lambda k: self.spans[k])

    @property
    def drift_ppm(self) -> float:
        return float(self.rates[self.main]) * 1e6


@dataclass(frozen=True)
class PairBounds:
    """What the matched packets say about θ = clock(b) − clock(a)."""

    a: int
    b: int
    upper: int | None  # θ ≤ upper (packets a→b)
    lower: int | None  # θ ≥ lower (packets b→a)
    n_upper: int
    n_lower: int
    fit: Fit | None = None  # drift or steps, on long captures

    @property
    def two_way(self) -> bool:
        return self.upper is not None and self.lower is not None

    @property
    def estimate(self) -> int:
        if self.fit is not None:
            return self.fit.offsets[self.fit.main]
        if self.upper is not None and self.lower is not None:
            return (self.upper + self.lower) // 2
        # One way only: assume the fastest packet took no time (delays >= 0).
        return self.upper if self.upper is not None else int(self.lower or 0)

    @property
    def bound(self) -> int:
        if self.fit is not None:
            return max(self.fit.bounds)
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
            fit = None
            if upper is not None and lower is not None:
                x_f, x_r = tmax[idx, a][goes_ab], tmin[idx, a][goes_ba]
                fit = fit_lines(x_f, up[goes_ab], x_r, -lo[goes_ba])
            out.append(PairBounds(a, b, upper, lower, n_up, n_lo, fit))
    return out


def _edges(lo: int, hi: int) -> I64:
    """FIT_WINDOWS equal windows over [lo, hi), in integers (epoch ns do not fit a float)."""
    # In Python integers: a span of decades (one frame stamped 2038 among ones from today) times
    # the window count overflows int64.
    span = hi - lo
    return np.array([lo + k * span // FIT_WINDOWS for k in range(FIT_WINDOWS + 1)], dtype=np.int64)


def _window_minima(x: I64, res: npt.NDArray[np.float64], edges: I64) -> I64:
    """Index of the smallest residual in each window (windows without samples left out)."""
    win = np.searchsorted(edges, x, side="right") - 1
    order = np.lexsort((res, win))
    w = win[order]
    head = np.r_[True, w[1:] != w[:-1]]
    return order[head]


def _hull_line(x: I64, y: I64, pivot: int) -> tuple[float, float]:
    """(slope, value at pivot) of the lower-hull edge spanning the mean x (Zhang et al.)."""
    xs = (x - pivot).astype(np.float64)
    ys = y.astype(np.float64)
    order = np.lexsort((ys, xs))
    hull: list[tuple[float, float]] = []
    for px, py in zip(xs[order].tolist(), ys[order].tolist(), strict=True):
        if hull and hull[-1][0] == px:
            continue  # same x: the lower y came first
        while len(hull) >= 2:
            (ax, ay), (bx, by) = hull[-2], hull[-1]
            if (bx - ax) * (py - ay) - (by - ay) * (px - ax) <= 0:
                hull.pop()  # b is on or above the chord a-p: not a lower-hull vertex
            else:
                break
        hull.append((px, py))
    if len(hull) < 2:
        return 0.0, float(ys.min())
    mean = float(xs.mean())
    for (ax, ay), (bx, by) in zip(hull, hull[1:], strict=False):
        if ax <= mean <= bx or (bx, by) == hull[-1]:
            slope = (by - ay) / (bx - ax)
            if abs(slope) > MAX_RATE:
                slope = 0.0
            # The line under every point (not only the window minima).
            value = float((ys - slope * xs).min())
            return slope, value
    return 0.0, float(ys.min())


def _line(x: I64, y: I64, pivot: int, span: int) -> tuple[float, float]:
    """The line under the one-way delays of one direction: slope, value at `pivot`."""
    edges = _edges(int(x.min()), int(x.max()) + 1)
    slope = 0.0
    for _ in range(2):
        # Detrended by the first pass's slope, the window minima contain the hull's vertices.
        res = y.astype(np.float64) - slope * (x - pivot).astype(np.float64)
        pick = _window_minima(x, res, edges)
        slope, _ = _hull_line(x[pick], y[pick], pivot)
    return _hull_line_all(x, y, pivot, slope)


def _hull_line_all(x: I64, y: I64, pivot: int, slope: float) -> tuple[float, float]:
    value = float((y.astype(np.float64) - slope * (x - pivot).astype(np.float64)).min())
    return slope, value


def _steps(x_f: I64, y_f: I64, x_r: I64, y_r: I64) -> list[int]:
    """Times (clock a) where θ shifts level: jumps in the windowed two-way estimate."""
    lo_t = int(min(x_f.min(), x_r.min()))
    hi_t = int(max(x_f.max(), x_r.max())) + 1
    edges = _edges(lo_t, hi_t)
    wf = np.searchsorted(edges, x_f, side="right") - 1
    wr = np.searchsorted(edges, x_r, side="right") - 1
    mf = np.full(FIT_WINDOWS, np.inf)
    mr = np.full(FIT_WINDOWS, np.inf)
    np.minimum.at(mf, wf, y_f.astype(np.float64))
    np.minimum.at(mr, wr, y_r.astype(np.float64))
    both = np.flatnonzero(np.isfinite(mf) & np.isfinite(mr))
    if both.shape[0] < 6:
        return []
    theta = (mf[both] - mr[both]) / 2
    # Drift is a slow ramp; a step is a jump between neighbouring windows, far above the jumps
    # between the others.
    jumps = np.diff(theta)
    big = np.flatnonzero(np.abs(jumps) > max(MIN_STEP_NS, 8 * float(np.median(np.abs(jumps)))))
    out: list[int] = []
    for k in big[:MAX_STEPS].tolist():
        w0, w1 = int(both[k]), int(both[k + 1])
        size = float(jumps[k])
        # Within the windows around the jump: the first sample that sits closer to the new level.
        ref_f, ref_r = mf[w0], mr[w0]
        sel_f = (
            (wf >= w0)
            & (wf <= w1)
            & (y_f - ref_f > size / 2 if size > 0 else y_f - ref_f < size / 2)
        )
        sel_r = (
            (wr >= w0)
            & (wr <= w1)
            & (ref_r - y_r > size / 2 if size > 0 else ref_r - y_r < size / 2)
        )
        cand = [int(x_f[sel_f].min())] if sel_f.any() else []
        cand += [int(x_r[sel_r].min())] if sel_r.any() else []
        out.append(min(cand) if cand else int(edges[w1]))
    return sorted(set(out))


def fit_lines(x_f: I64, y_f: I64, x_r: I64, y_r: I64) -> Fit | None:
    """Drift and steps of one pair from its one-way delays both ways (None: keep a constant).

    `y_f` = t_b − t_a of packets a→b and `y_r` = t_a − t_b of packets b→a, at times `x_*` on
    clock a. Each segment between steps gets the lines L_f and L_r under its delays; θ is
    (L_f − L_r)/2 and its bound (L_f + L_r)/2, both taken at the segment's mean time.
    """
    if x_f.shape[0] < 4 or x_r.shape[0] < 4:
        return None
    lo_t = int(min(x_f.min(), x_r.min()))
    hi_t = int(max(x_f.max(), x_r.max()))
    if hi_t - lo_t < MIN_FIT_SPAN_NS:
        return None
    cuts = _steps(x_f, y_f, x_r, y_r)
    bounds_t = [np.iinfo(np.int64).min, *cuts, np.iinfo(np.int64).max]
    starts: list[int] = []
    offsets: list[int] = []
    rates: list[float] = []
    pivots: list[int] = []
    halfs: list[int] = []
    counts: list[int] = []
    mismatch = 0.0
    for s0, s1 in zip(bounds_t, bounds_t[1:], strict=False):
        sf = (x_f >= s0) & (x_f < s1)
        sr = (x_r >= s0) & (x_r < s1)
        if sf.sum() < 2 or sr.sum() < 2:
            continue
        xs = np.concatenate([x_f[sf], x_r[sr]])
        pivot = int(xs.min() + (xs.max() - xs.min()) // 2)
        span = int(xs.max() - xs.min())
        af, bf = _line(x_f[sf], y_f[sf], pivot, span)
        ar, br = _line(x_r[sr], y_r[sr], pivot, span)
        if span < MIN_FIT_SPAN_NS // 4:
            af = ar = 0.0  # too short a piece to see a drift in
            _, bf = _hull_line_all(x_f[sf], y_f[sf], pivot, 0.0)
            _, br = _hull_line_all(x_r[sr], y_r[sr], pivot, 0.0)
        mismatch = max(mismatch, abs(af + ar))
        starts.append(s0)
        offsets.append(int(round((bf - br) / 2)))
        rates.append((af - ar) / 2)
        pivots.append(pivot)
        halfs.append(int(np.ceil(abs(bf + br) / 2)))
        counts.append(int(sf.sum() + sr.sum()))
    if not starts:
        return None
    starts[0] = int(np.iinfo(np.int64).min)
    step_sizes = []
    for k in range(1, len(starts)):
        before = offsets[k - 1] + rates[k - 1] * (starts[k] - pivots[k - 1])
        after = offsets[k] + rates[k] * (starts[k] - pivots[k])
        step_sizes.append((starts[k], int(round(after - before))))
    return Fit(
        tuple(starts),
        tuple(offsets),
        tuple(rates),
        tuple(pivots),
        tuple(halfs),
        tuple(step_sizes),
        mismatch,
        tuple(counts),
    )


def _reduce_min(values: I64, groups: I64, mask: npt.NDArray[np.bool_], n: int) -> I64:
    return kernels.group_min(groups[mask], values[mask], n)  # int64 max where none


def _reduce_max(values: I64, groups: I64, mask: npt.NDArray[np.bool_], n: int) -> I64:
    return kernels.group_max(groups[mask], values[mask], n)  # int64 min where none


@dataclass(frozen=True)
class DomainClock:
    """A domain's offset against the reference as a function of its own time.

    The sum of the pair terms along the spanning tree: (sign, fit, fit's clock is this
    domain's own). A fit on the other end's clock is evaluated one iteration back (t − θ(t)),
    which puts a step's boundary right to within the fit's error.
    """

    terms: tuple[tuple[int, Fit, bool], ...]
    constant: int

    def offset_at(self, t: I64) -> I64:
        t = np.asarray(t, dtype=np.int64)
        out = np.full(t.shape[0], self.constant, dtype=np.int64)
        for sign, fit, own in self.terms:
            x = t if own else t - fit.at(t)
            out += sign * fit.at(x)
        return out

    def correct(self, t: I64) -> I64:
        """Times on the reference clock."""
        return np.asarray(t, dtype=np.int64) - self.offset_at(t)


@dataclass(frozen=True)
class ClockSolution:
    offsets: tuple[int, ...]  # per domain: domain clock − reference clock (0 if unrelated)
    related: tuple[bool, ...]
    estimates: tuple[ClockEstimate, ...]
    warnings: tuple[str, ...]
    models: tuple[DomainClock | None, ...] = ()  # per domain, where a drift or step was fitted


def solve(names: list[str], reference: int, pairs: list[PairBounds]) -> ClockSolution:
    """Offsets of every domain against the reference along the tightest spanning tree (Prim)."""
    n = len(names)
    offsets = [0] * n
    bounds = [0] * n
    samples = [0] * n
    related = [False] * n
    related[reference] = True
    warnings: list[str] = []
    terms: list[list[tuple[int, Fit, bool]]] = [[] for _ in range(n)]
    consts = [0] * n
    for p in pairs:
        if p.fit is not None:
            continue  # a drift or a step explains an empty constant interval
        if p.two_way and p.upper is not None and p.lower is not None and p.upper < p.lower:
            warnings.append(
                f"clocks {names[p.a]} and {names[p.b]}: the matched packets disagree by "
                f"{p.lower - p.upper} ns (drift, a clock step, or a wrong match); "
                f"using the midpoint"
            )

    tree: set[tuple[int, int]] = set()

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
        terms[dst] = list(terms[src])
        consts[dst] = consts[src]
        if p.fit is not None:
            # θ_pair is a function of clock a's time: dst's own when dst is a.
            terms[dst].append((1 if dst == p.b else -1, p.fit, dst == p.a))
            _fit_warnings(names[p.a], names[p.b], p.fit, warnings)
        else:
            consts[dst] += theta
        tree.add((min(src, dst), max(src, dst)))
        if p.two_way and bounds[src] >= 0:
            bounds[dst] = bounds[src] + p.bound
        else:
            bounds[dst] = -1
        samples[dst] = p.n_upper + p.n_lower
        related[dst] = True
        if not p.two_way:
            # Packets a -> b say θ <= upper; b -> a say θ >= lower; dst's offset is θ or −θ.
            limit = "an upper" if (p.upper is not None) == (dst == p.b) else "a lower"
            warnings.append(
                f"clock {names[dst]}: packets were matched in one direction only against "
                f"{names[src]}; its offset is only {limit} limit (it assumes the fastest "
                f"packet took no time) and its error bound is unknown"
            )
    # Pairs left out of the tree close cycles: the offsets composed along the tree must agree
    # with what the pair itself says, within both bounds (section 2.5).
    for p in pairs:
        if (p.a, p.b) in tree or not p.two_way or not (related[p.a] and related[p.b]):
            continue
        if bounds[p.a] < 0 or bounds[p.b] < 0:
            continue
        composed = offsets[p.b] - offsets[p.a]
        slack = bounds[p.a] + bounds[p.b] + p.bound
        if abs(composed - p.estimate) > slack:
            warnings.append(
                f"clocks {names[p.a]} and {names[p.b]}: offsets composed through other clocks "
                f"({composed} ns) and measured directly ({p.estimate} ns) disagree by more than "
                f"their bounds ({slack} ns): a wrong match or a clock that moved"
            )
    models: list[DomainClock | None] = [
        DomainClock(tuple(terms[i]), consts[i]) if terms[i] else None for i in range(n)
    ]
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
        drift = None
        if terms[i]:
            drift = sum(sign * f.rates[f.main] for sign, f, _ in terms[i]) * 1e6
        estimates.append(
            ClockEstimate(names[i], names[reference], offsets[i], bounds[i], samples[i], drift)
        )
    return ClockSolution(
        tuple(offsets), tuple(related), tuple(estimates), tuple(warnings), tuple(models)
    )


def _fit_warnings(a: str, b: str, fit: Fit, warnings: list[str]) -> None:
    for when, size in fit.steps:
        stamp = datetime.fromtimestamp(when / 1e9, tz=UTC).isoformat(timespec="microseconds")
        warnings.append(
            f"clock step: {b}'s clock moved by {size / 1e6:+.3f} ms against {a} at {stamp} "
            f"({when} ns on {a}'s clock); times before and after are corrected separately"
        )
    if fit.skew_mismatch > 5e-6:
        warnings.append(
            f"clocks {a} and {b}: the drift seen one way and the other disagree by "
            f"{fit.skew_mismatch * 1e6:.1f} ppm (a clock being slewed?); the average is used"
        )

"""Clock composition over a spanning tree of domain pairs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from tracer.correlate.clocks import DomainClock, PairBounds, fit_lines, solve


def test_two_way_pair_midpoint_and_bound() -> None:
    p = PairBounds(0, 1, upper=5_100, lower=4_900, n_upper=3, n_lower=2)
    sol = solve(["a", "b"], 0, [p])
    (est,) = sol.estimates
    assert (est.node, est.reference, est.offset_ns, est.error_bound_ns) == ("b", "a", 5_000, 100)
    assert est.samples == 5


def test_composition_along_tightest_edges_and_reversed_pairs() -> None:
    pairs = [
        PairBounds(0, 1, 1_010, 990, 1, 1),  # b = a + 1000 ± 10
        PairBounds(1, 2, 2_020, 1_980, 1, 1),  # c = b + 2000 ± 20
        PairBounds(0, 2, 9_000, -9_000, 1, 1),  # loose: must not be used
    ]
    sol = solve(["a", "b", "c"], 0, pairs)
    by = {e.node: e for e in sol.estimates}
    assert by["c"].offset_ns == 3_000
    assert by["c"].error_bound_ns == 30
    # The same with the reference in the middle: offsets flip sign on the way back.
    sol = solve(["a", "b", "c"], 1, pairs)
    by = {e.node: e for e in sol.estimates}
    assert by["a"].offset_ns == -1_000 and by["c"].offset_ns == 2_000


def test_unrelated_and_inconsistent_domains_are_warned() -> None:
    sol = solve(["a", "b", "c"], 0, [PairBounds(0, 1, 100, 300, 1, 1)])
    assert [e.node for e in sol.estimates] == ["b"]
    assert any("disagree" in w for w in sol.warnings)
    assert any("clock c" in w and "not corrected" in w for w in sol.warnings)


# --- drift, steps, cycles ----------------------------------------------------------------------

T0 = 1_700_000_000_000_000_000


def _delays(
    seed: int, theta0: int, ppm: float, span_ns: int, n: int = 3000, step: tuple[int, int] = (0, 0)
) -> tuple[Any, Any, Any, Any, Callable[[Any], Any]]:
    """One-way delays both ways between clocks a and b, θ(t) = θ0 + ρ·(t − T0) (+ a step)."""
    rng = np.random.default_rng(seed)

    def theta(t: Any) -> Any:
        off = theta0 + np.rint((t - T0) * ppm * 1e-6).astype(np.int64)
        if step[1]:
            off = off + np.where(t >= step[0], step[1], 0)
        return off

    xa = np.sort(rng.integers(T0, T0 + span_ns, n))  # a→b sent at a's time (true time)
    xb = np.sort(rng.integers(T0, T0 + span_ns, n))  # b→a sent (true time)
    d_ab = 60_000 + rng.exponential(40_000, n).astype(np.int64)
    d_ba = 80_000 + rng.exponential(40_000, n).astype(np.int64)
    y_f = d_ab + theta(xa + d_ab)  # t_b − t_a
    y_r = d_ba - theta(xb)  # t_a − t_b, received at a at xb + d_ba
    return xa, y_f, xb + d_ba, y_r, theta


@settings(max_examples=25, deadline=None)
@given(
    st.integers(0, 10_000),
    st.integers(-1_000_000_000, 1_000_000_000),
    st.floats(-100.0, 100.0),
)
def test_drift_recovered_within_1ppm_over_10_minutes(seed: int, theta0: int, ppm: float) -> None:
    x_f, y_f, x_r, y_r, theta = _delays(seed, theta0, ppm, 600_000_000_000)
    fit = fit_lines(x_f, y_f, x_r, y_r)
    assert fit is not None and not fit.steps
    assert abs(fit.drift_ppm - ppm) < 1.0
    # The offset at every time is within the reported bound.
    t = np.linspace(T0, T0 + 600_000_000_000, 50).astype(np.int64)
    assert np.all(np.abs(fit.at(t) - theta(t)) <= max(fit.bounds))


def test_short_capture_keeps_a_constant_offset() -> None:
    x_f, y_f, x_r, y_r, _ = _delays(1, 5_000, 50.0, 2_000_000_000)
    assert fit_lines(x_f, y_f, x_r, y_r) is None


def test_clock_step_is_split_and_each_side_refitted() -> None:
    when = T0 + 200_000_000_000
    x_f, y_f, x_r, y_r, theta = _delays(
        3, 300_000_000, 20.0, 400_000_000_000, step=(when, -150_000_000)
    )
    fit = fit_lines(x_f, y_f, x_r, y_r)
    assert fit is not None and len(fit.steps) == 1
    at, size = fit.steps[0]
    assert abs(size + 150_000_000) < 1_000_000
    assert abs(at - when) < 1_000_000_000  # located between two packets around it
    t = np.concatenate(
        [
            np.linspace(T0, when - 2_000_000_000, 20),
            np.linspace(when + 2_000_000_000, T0 + 4e11, 20),
        ]
    ).astype(np.int64)
    assert np.all(np.abs(fit.at(t) - theta(t)) <= max(fit.bounds))


def test_step_and_drift_are_reported_by_solve() -> None:
    when = T0 + 100_000_000_000
    x_f, y_f, x_r, y_r, theta = _delays(4, 0, 30.0, 300_000_000_000, step=(when, 200_000_000))
    fit = fit_lines(x_f, y_f, x_r, y_r)
    p = PairBounds(0, 1, int(y_f.min()), int(-y_r.min()), len(x_f), len(x_r), fit)
    sol = solve(["a", "b"], 0, [p])
    assert any("clock step" in w and "+200.000 ms" in w for w in sol.warnings)
    (est,) = sol.estimates
    assert est.drift_ppm is not None and abs(est.drift_ppm - 30.0) < 1.0
    model = sol.models[1]
    assert isinstance(model, DomainClock)
    # b's raw times map back to a's (reference) clock on both sides of the step.
    true_t = np.array([when - 5_000_000_000, when + 1_000_000_000, T0 + 290_000_000_000])
    raw_b = true_t + theta(true_t)
    assert np.all(np.abs(model.correct(raw_b) - true_t) <= est.error_bound_ns)


def test_cycle_that_does_not_close_is_warned() -> None:
    pairs = [
        PairBounds(0, 1, 1_010, 990, 1, 1),  # b = a + 1000 ± 10
        PairBounds(1, 2, 2_020, 1_980, 1, 1),  # c = b + 2000 ± 20
        PairBounds(0, 2, 5_050, 4_950, 1, 1),  # c = a + 5000 ± 50: 2000 off the composed 3000
    ]
    sol = solve(["a", "b", "c"], 0, pairs)
    assert any("composed" in w and "a and c" in w for w in sol.warnings)
    consistent = [*pairs[:2], PairBounds(0, 2, 3_050, 2_950, 1, 1)]
    assert not any("composed" in w for w in solve(["a", "b", "c"], 0, consistent).warnings)


def test_one_way_offset_is_called_a_limit_with_unknown_error_bound() -> None:
    # Packets a -> b only: θ = clock(b) − clock(a) <= 700 (a delay of zero would make it 700).
    sol = solve(["a", "b"], 0, [PairBounds(0, 1, upper=700, lower=None, n_upper=4, n_lower=0)])
    (est,) = sol.estimates
    assert est.offset_ns == 700
    (w,) = [w for w in sol.warnings if w.startswith("clock b:")]
    assert "only an upper limit" in w and "error bound is unknown" in w
    assert "is a bound" not in w
    # Seen from b as the reference, a's offset is −θ >= −700: a lower limit.
    sol = solve(["a", "b"], 1, [PairBounds(0, 1, upper=700, lower=None, n_upper=4, n_lower=0)])
    (w,) = [w for w in sol.warnings if w.startswith("clock a:")]
    assert "only a lower limit" in w and "error bound is unknown" in w


def test_one_sample_decades_away_does_not_break_the_fit() -> None:
    # A frame stamped 0x7FFFFFFF s (2038) among ones from 2023: the window edges span ~4.6e17 ns,
    # more than int64 holds once multiplied by the window count.
    x_f, y_f, x_r, y_r, _ = _delays(5, 1_000_000, 0.0, 600_000_000_000)
    x_f = x_f.copy()
    x_f[-1] = 0x7FFFFFFF * 1_000_000_000
    x_r = x_r.copy()
    x_r[0] = 1_000_000_000
    fit = fit_lines(x_f, y_f, x_r, y_r)  # no IndexError / overflow
    assert fit is None or all(np.isfinite(b) for b in fit.bounds)

"""The accuracy suite: generated captures scored against their truth."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from tracer.correlate import correlate
from tracer.testing.accuracy import CASES, Case, generate, run_accuracy_suite, score, true_offset


def test_suite_meets_its_targets() -> None:
    rows = run_accuracy_suite(seed=0)
    assert [r.scenario for r in rows] == [c.name for c in CASES]
    for r in rows:
        assert r.false_matches == 0, r
        assert r.within_bound, r
        assert r.matched_correctly_pct >= 99.9, r
        assert r.journeys > 0
    ten_minutes = next(r for r in rows if "10 min" in r.scenario)
    assert ten_minutes.drift_error_ppm < 1.0


def test_generated_clock_is_what_the_case_says() -> None:
    case = Case("x", 50, 60_000_000_000, offset_ns=1_000_000, drift_ppm=10.0, jitter_ns=0)
    gen = generate(case)
    server = next(pf for pf in gen.pointframes if pf.point.node == "node-b")
    stamped = np.asarray(server.frames.columns["t_ns"])
    true_t = gen.true_ns[server.point.name]
    assert np.array_equal(stamped - true_t, true_offset(case, true_t))


def test_a_wrong_clock_is_caught_by_the_score() -> None:
    # Scoring is not a rubber stamp: against a truth 1 ms away, the same estimate fails.
    case = Case("y", 200, 20_000_000_000, offset_ns=5_000_000)
    gen = generate(case)
    corr = correlate(gen.pointframes)
    assert score(case, gen, corr).within_bound
    moved = {k: (v + 1_000_000 if k == "server" else v) for k, v in gen.true_ns.items()}
    row = score(case, replace(gen, true_ns=moved), corr)
    assert not row.within_bound and row.offset_error_us > 800


@pytest.mark.parametrize("ppm", [-100.0, 63.0])
def test_drifted_copy_recovers_the_drift(ppm: float) -> None:
    case = Case("d", 1500, 600_000_000_000, offset_ns=-300_000_000, drift_ppm=ppm)
    gen = generate(case, seed=7)
    corr = correlate(gen.pointframes)
    (est,) = corr.clocks
    assert est.drift_ppm is not None and abs(est.drift_ppm - ppm) < 1.0
    row = score(case, gen, corr)
    assert row.false_matches == 0 and row.within_bound

"""Clock composition over a spanning tree of domain pairs."""

from __future__ import annotations

from tracer.correlate.clocks import PairBounds, solve


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

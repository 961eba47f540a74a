"""Properties: what must not change the answer, and what must never happen."""

from __future__ import annotations

import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tracer.correlate import PointFrames, build_path, correlate, select
from tracer.model import Path
from tracer.testing import synth

SCENARIOS = {
    "dnat": synth.dnat_scenario,
    "overlay": synth.overlay_scenario,
    "nodeport": synth.nodeport_scenario,
    "dns": synth.dns_scenario,
}


def _shape(path: Path) -> list[object]:
    """Everything in a path but frame numbers and clock offsets."""
    hops = [
        (h.point, h.interface, h.direction, h.t_ns, h.tuple5, h.translation)
        for h in path.forward + path.reverse
    ]
    return [hops, path.latency, path.request]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.sampled_from(sorted(SCENARIOS)), seed=st.integers(0, 2**32 - 1))
def test_row_order_within_a_point_does_not_matter(name: str, seed: int) -> None:
    sc = SCENARIOS[name](offsets={"node-b": 1_234_567})
    rng = random.Random(seed)
    base = correlate(sc.point_frames())
    base_path = build_path(base, select(base))
    pfs = []
    new_index: dict[str, list[int]] = {}
    for p in sc.points:
        rows = list(sc.frames[p.name])
        perm = list(range(len(rows)))
        rng.shuffle(perm)
        shuffled = tuple(rows[i] for i in perm)
        new_index[p.name] = [perm.index(i) for i in range(len(rows))]
        pfs.append(PointFrames(p, synth.frames_from_specs(shuffled, p.name)))
    corr = correlate(pfs)
    path = build_path(corr, select(corr))
    assert _shape(path) == _shape(base_path)
    assert [new_index[h.point][h.frame or 0] for h in base_path.forward] == [
        h.frame for h in path.forward
    ]


@settings(max_examples=25, deadline=None)
@given(
    name=st.sampled_from(sorted(SCENARIOS)),
    shift=st.integers(-(10**12), 10**12),
)
def test_shifting_one_clock_changes_only_its_offset(name: str, shift: int) -> None:
    sc = SCENARIOS[name](offsets={"node-b": 0})
    moved = SCENARIOS[name](offsets={"node-b": shift})
    a = correlate(sc.point_frames())
    b = correlate(moved.point_frames())
    pa, pb = build_path(a, select(a)), build_path(b, select(b))
    assert _shape(pa) == _shape(pb)
    ca = {c.node: c for c in a.clocks}
    cb = {c.node: c for c in b.clocks}
    assert cb["node-b"].offset_ns - ca["node-b"].offset_ns == shift
    assert cb["node-b"].error_bound_ns == ca["node-b"].error_bound_ns


@settings(max_examples=20, deadline=None)
@given(
    n=st.integers(1, 40),
    seed=st.integers(0, 2**32 - 1),
    spacing=st.integers(0, 400_000),
)
def test_no_journey_contradicts_its_connection(n: int, seed: int, spacing: int) -> None:
    points, frames = synth.bulk_dnat(n, seed=seed, spacing_ns=spacing)
    corr = correlate([PointFrames(p, frames[p.name]) for p in points])
    assert len(corr) == n
    clients = set()
    for c in corr.connections:
        learned = set(c.tuples)
        assert len(c.journeys) == 10
        assert sum(len(j.observations) for j in c.journeys) == 40
        for j in c.journeys:
            for o in j.observations:
                tup = o.tuple5 if j.direction == "forward" else o.tuple5.reversed()
                assert (o.point, tup) in learned
                assert tup.src == c.client.src  # no NAT of the source in this scenario
        clients.add(c.client)
    assert len(clients) == n

"""Scenario truth is self-consistent: every sighting shows its packet, each node keeps its clock."""

from __future__ import annotations

import pytest

from tests.testing.synth import ALL
from tracer.testing import synth


@pytest.mark.parametrize("make", ALL)
def test_truth_points_at_frames_of_that_packet(make: object) -> None:
    sc = make()  # type: ignore[operator]
    for p in sc.packets:
        for (point, idx), tup in zip(p.sightings, p.tuples, strict=True):
            s = sc.frames[point][idx]
            assert s.packet == p.id
            assert (s.pkt.src, s.pkt.dst) == (tup.src.ip, tup.dst.ip)
    for rows in sc.frames.values():
        assert [s.t_ns for s in rows] == sorted(s.t_ns for s in rows)


def test_offsets_are_applied_per_node() -> None:
    plain = synth.overlay_scenario()
    moved = synth.overlay_scenario(offsets={"node-b": 123_456})
    for point in ("client", "node-a"):
        assert [s.t_ns for s in moved.frames[point]] == [s.t_ns for s in plain.frames[point]]
    for point in ("node-b", "server"):
        assert [s.t_ns for s in moved.frames[point]] == [
            s.t_ns + 123_456 for s in plain.frames[point]
        ]
    syn = moved.first("syn")
    assert moved.frames["server"][syn.sightings[-1][1]].t_ns == syn.true_ns[-1] + 123_456

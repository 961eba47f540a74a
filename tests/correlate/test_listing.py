"""The columnar connection table agrees with the one-request path builder, connection by connection."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tracer.correlate import Correlation, PointFrames, build_path, correlate, listing
from tracer.correlate import outcome as oc
from tracer.correlate.listing import ConnectionTable, connection_table
from tracer.testing import synth
from tracer.testing.accuracy import Case, generate


def _agree(corr: Correlation, t: ConnectionTable) -> None:
    assert len(t) == len(corr)
    for i in range(len(corr)):
        c = corr.connection(i)
        p = build_path(corr, c)
        ports = t.sport[i] >= 0
        client = (
            f"{t.addresses[t.src[i]]}:{t.sport[i]}" if ports else t.addresses[t.src[i]],
            f"{t.addresses[t.dst[i]]}:{t.dport[i]}" if ports else t.addresses[t.dst[i]],
        )
        assert client == (str(c.client.src), str(c.client.dst)), i
        backend = f"{t.addresses[t.backend[i]]}:{t.backend_port[i]}" if t.backend[i] >= 0 else None
        assert backend == (str(c.backend) if c.backend is not None else None), i
        assert t.path(i) == list(c.points), i
        lat = p.latency
        got = (t.connect_ns[i], t.server_ns[i], t.total_ns[i])
        want = tuple(-1 if v is None else v for v in (lat.connect_ns, lat.server_ns, lat.total_ns))
        assert got == want, i
        assert t.points[t.last_point[i]] == p.forward[-1].point, i
        segs = [s.first_ns for s in lat.segments]
        assert t.slow_ns[i] == (max(segs) if segs else -1), i
        assert t.retransmissions[i] == sum(1 for j in c.journeys if j.retransmission), i


def _check_outcomes(corr: Correlation, t: ConnectionTable) -> None:
    """Outcomes against the packets each materialised connection holds."""
    for i in range(len(corr)):
        c = corr.connection(i)
        kinds = [(j.direction, j.kind) for j in c.journeys]
        got = oc.OUTCOMES[int(t.outcome[i])]
        if c.protocol != "tcp":
            continue
        if ("reverse", "rst") in kinds:
            assert got == "reset", (i, kinds)
        elif ("forward", "syn") not in kinds:
            assert got == "incomplete", (i, kinds)
        elif ("reverse", "syn-ack") not in kinds:
            assert got in ("unanswered", "incomplete"), (i, kinds)
        elif ("forward", "fin") in kinds and ("reverse", "fin") in kinds:
            assert got == "ok", (i, kinds)


SCENARIOS = {
    "dnat": synth.dnat_scenario,
    "overlay": synth.overlay_scenario,
    "nodeport": synth.nodeport_scenario,
    "dns": synth.dns_scenario,
    "icmp": synth.icmp_scenario,
    "loopback": synth.loopback_scenario,
}


def test_every_scenario_agrees_with_its_path() -> None:
    for make in SCENARIOS.values():
        corr = correlate(make().point_frames())
        t = connection_table(corr)
        _agree(corr, t)
        assert oc.OUTCOMES[int(t.outcome[0])] == "ok"


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**16),
    loss=st.sampled_from([0.0, 0.02, 0.2]),
    retransmit=st.booleans(),
    offset=st.integers(-(10**9), 10**9),
    timestamps=st.booleans(),
)
def test_generated_captures_agree_with_the_path_builder(
    seed: int, loss: float, retransmit: bool, offset: int, timestamps: bool
) -> None:
    case = Case(
        "generated",
        40,
        200_000_000,
        offset_ns=offset,
        loss=loss,
        retransmit=retransmit,
        timestamps=timestamps,
        jitter_ns=200_000,
    )
    gen = generate(case, seed)
    corr = correlate(list(gen.pointframes))
    t = connection_table(corr)
    _agree(corr, t)
    _check_outcomes(corr, t)


def test_bulk_connections_are_all_ok_and_no_noise(monkeypatch: pytest.MonkeyPatch) -> None:
    points, frames = synth.bulk_dnat(300)
    corr = correlate([PointFrames(p, frames[p.name]) for p in points])
    t = connection_table(corr)
    # The passes over every row work a chunk at a time: chunk edges change nothing.
    monkeypatch.setattr(listing, "_CHUNK", 97)
    small = connection_table(corr)
    for name in ("path_rank", "connect_ns", "server_ns", "total_ns", "outcome", "backend"):
        assert np.array_equal(getattr(small, name), getattr(t, name)), name
    assert len(t) == 300
    assert (t.outcome == oc.OK).all()
    assert not t.noise.any() and not t.folded.any()
    assert (t.total_ns > 0).all() and (t.connect_ns > 0).all()

"""Correlation accuracy on generated captures whose truth is known, frame by frame.

Each case takes many overlapping copies of the DNAT scenario (client pod and node on node-a's
clock, the server pod on node-b's), then does to node-b's capture what real clocks and networks
do: an offset up to ±1 s, a drift up to 100 ppm, a clock step, loss, extra delay that reorders
arrivals, retransmissions, connections without TCP timestamps (low-entropy pure ACKs only keyed
on seq/ack). The correlator's journeys are scored against the truth (which frames are one
packet) and its clock against the true clock function. Pure computation: nothing is read or
written; `scripts/bench --sections accuracy` prints the rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from tracer.correlate import Correlation, PointFrames, correlate
from tracer.pcap.columns import Frames
from tracer.testing.synth import START_NS, BulkTruth, bulk_dnat_truth

I64 = npt.NDArray[np.int64]
_MINUTE = 60_000_000_000


@dataclass(frozen=True)
class AccuracyRow:
    """One case's score; every field prints as it is."""

    scenario: str
    journeys: int  # packets of the truth seen at two points or more
    matched_correctly_pct: float  # of those, the ones whose sightings form exactly one journey
    false_matches: int  # sightings of another packet put into a journey
    offset_error_us: float  # worst |corrected time − true time| over node-b's frames
    bound_us: float  # the error bound reported for node-b's clock
    within_bound: bool
    drift_error_ppm: float  # |estimated − true drift| (0 when neither drifts)


@dataclass(frozen=True)
class Case:
    """What is done to the generated run: node-b's clock and the network between them."""

    name: str
    connections: int
    duration_ns: int
    offset_ns: int = 0
    drift_ppm: float = 0.0
    step_ns: int = 0  # node-b's clock steps by this much halfway through
    loss: float = 0.0  # fraction of frames lost before node-b and by the client's capture
    jitter_ns: int = 30_000  # mean extra one-way delay (exponential), both ways: reorders
    asymmetry_ns: int = 25_000  # the way back is slower by this much at the least
    retransmit: bool = False
    timestamps: bool = True


CASES: tuple[Case, ...] = (
    Case("offset +0.9 s", 2000, _MINUTE, offset_ns=900_000_000),
    Case("offset -1 s, drift +100 ppm, 10 min", 3000, 10 * _MINUTE, -1_000_000_000, 100.0),
    Case(
        "drift -37 ppm, loss 1%, reordering",
        3000,
        5 * _MINUTE,
        250_000_000,
        -37.0,
        loss=0.01,
        jitter_ns=300_000,
    ),
    Case("retransmissions, drift 12 ppm", 2000, 2 * _MINUTE, -400_000_000, 12.0, retransmit=True),
    Case("clock step +80 ms", 3000, 4 * _MINUTE, 50_000_000, 5.0, step_ns=80_000_000),
    Case("10k concurrent, no TCP timestamps", 10_000, 1_000_000_000, 700_000_000, timestamps=False),
)


def true_offset(case: Case, t_true: I64) -> I64:
    """node-b's clock minus the true time, at true times `t_true`."""
    rel = (t_true - START_NS).astype(np.float64)
    off = case.offset_ns + np.rint(case.drift_ppm * 1e-6 * rel).astype(np.int64)
    if case.step_ns:
        off = off + np.where(rel >= case.duration_ns / 2, case.step_ns, 0)
    return off.astype(np.int64)


@dataclass(frozen=True)
class Generated:
    pointframes: tuple[PointFrames, ...]
    packet: dict[str, I64]  # per point, per frame: the truth packet id
    true_ns: dict[str, I64]  # per point, per frame: the true time


def _subset(fr: Frames, keep: npt.NDArray[np.bool_], t: I64) -> Frames:
    cols = {k: np.asarray(v)[keep] for k, v in fr.columns.items()}
    cols["t_ns"] = t[keep]
    order = np.argsort(cols["t_ns"], kind="stable")
    cols = {k: v[order] for k, v in cols.items()}
    return Frames(fr.path, fr.linktypes, cols, fr.encaps, fr.addresses, dict(fr.interfaces))


def generate(case: Case, seed: int = 0) -> Generated:
    spacing = max(1, case.duration_ns // case.connections)
    points, frames, truth = bulk_dnat_truth(
        case.connections,
        seed=seed,
        spacing_ns=spacing,
        retransmit=case.retransmit,
        timestamps=case.timestamps,
    )
    rng = np.random.default_rng(seed + 1)
    forward = _forward_ids(truth)
    # One extra delay per packet between the nodes: forward packets reach node-b later, replies
    # reach node-a (and then the client) later, by the same amount at both of its points.
    n_ids = truth.per_connection * case.connections
    extra = rng.exponential(case.jitter_ns, n_ids).astype(np.int64) if case.jitter_ns else None
    out: list[PointFrames] = []
    packet: dict[str, I64] = {}
    true_ns: dict[str, I64] = {}
    for p in points:
        fr = frames[p.name]
        n = len(fr)
        t = np.asarray(fr.columns["t_ns"], dtype=np.int64)
        ids = truth.packet[p.name]
        keep = np.ones(n, dtype=bool)
        fwd = forward[ids % truth.per_connection]
        late = fwd if p.node == "node-b" else ~fwd
        if extra is not None:
            t = t + np.where(late, extra[ids], 0)
        if p.node != "node-b":
            t = t + np.where(late, case.asymmetry_ns, 0)
        if p.node == "node-b":
            if case.loss:
                keep &= rng.random(n) >= case.loss
            stamped = t + true_offset(case, t)
        else:
            if case.loss and p.role == "client":
                keep &= rng.random(n) >= case.loss
            stamped = t
        sub = _subset(fr, keep, stamped)
        order = np.argsort(stamped[keep], kind="stable")
        packet[p.name] = ids[keep][order]
        true_ns[p.name] = t[keep][order]
        out.append(PointFrames(p, sub))
    return Generated(tuple(out), packet, true_ns)


def _forward_ids(truth: BulkTruth) -> npt.NDArray[np.bool_]:
    fwd = np.zeros(truth.per_connection, dtype=bool)
    for pk in truth.template.packets:
        fwd[pk.id] = pk.direction == "forward"
    return fwd


def score(case: Case, gen: Generated, corr: Correlation) -> AccuracyRow:
    tb = corr.table
    names = [pf.point.name for pf in gen.pointframes]
    tid = np.empty(tb.pidx.shape[0], dtype=np.int64)
    for i, name in enumerate(names):
        here = tb.pidx == i
        tid[here] = gen.packet[name][tb.row[here]]
    n_j = int(tb.jstart.shape[0]) - 1
    jrow = np.repeat(np.arange(n_j), np.diff(tb.jstart))
    pairs = np.unique(jrow * (1 << 32) + tid)
    pj, pt = pairs >> 32, pairs & 0xFFFFFFFF
    ids_per_journey = np.bincount(pj, minlength=n_j)
    false_matches = int((ids_per_journey - 1).clip(0).sum())
    n_t = int(tid.max()) + 1 if tid.shape[0] else 0
    journeys_per_id = np.bincount(pt, minlength=n_t)
    pure = ids_per_journey[pj] == 1
    good_ids = np.zeros(n_t, dtype=bool)
    good_ids[pt[pure]] = True
    good_ids &= journeys_per_id == 1
    # Packets the captures could match: seen at two points or more.
    pts = np.unique(tid * 8 + tb.pidx)
    seen_at = np.bincount(pts // 8, minlength=n_t)
    matchable = seen_at >= 2
    total = int(matchable.sum())
    correct = int((good_ids & matchable).sum())
    # Clock: corrected against true time, over every frame on node-b's clock.
    err = 0
    for i, pf in enumerate(gen.pointframes):
        if pf.point.node != "node-b":
            continue
        here = tb.pidx == i
        true_t = gen.true_ns[pf.point.name][tb.row[here]]
        if true_t.shape[0]:
            err = max(err, int(np.abs(tb.tc[here] - true_t).max()))
    est = next((c for c in corr.clocks if c.node == "node-b"), None)
    bound = est.error_bound_ns if est is not None else -1
    drift_est = est.drift_ppm if est is not None and est.drift_ppm is not None else 0.0
    return AccuracyRow(
        scenario=case.name,
        journeys=total,
        matched_correctly_pct=round(100.0 * correct / total, 3) if total else 0.0,
        false_matches=false_matches,
        offset_error_us=round(err / 1000, 1),
        bound_us=round(bound / 1000, 1),
        within_bound=0 <= err <= bound,
        drift_error_ppm=round(abs(drift_est - case.drift_ppm), 3),
    )


def run_case(case: Case, seed: int = 0) -> AccuracyRow:
    gen = generate(case, seed)
    return score(case, gen, correlate(gen.pointframes))


def run_accuracy_suite(seed: int = 0) -> list[AccuracyRow]:
    """Every case of CASES, generated from `seed`, scored."""
    return [run_case(case, seed) for case in CASES]

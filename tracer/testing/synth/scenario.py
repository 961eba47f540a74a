"""The scenario model: stages, exchange steps, ground truth, and routing steps through stages.

A scenario is a list of `Stage`s (one per sighting of a forward packet: point, interface,
direction, the tuple at that sighting, the delay since the previous one) and an exchange of
packets (`Step`s). `build_scenario` routes the exchange through the stages and gives each point's
frames, stamped by that point's clock (true time plus the node's offset), and the truth: which
frames are the same packet, the tuple at every sighting, the translations, the offsets.
Nothing here sends traffic.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Literal

from tracer.model import CapturePoint, Endpoint, Translation, Tuple5, translation_kind
from tracer.pcap.columns import DIR_IN, DIR_OUT, DIR_UNKNOWN, Frames
from tracer.testing.synth.columns import frames_from_specs
from tracer.testing.wire import Pkt, Sighting, Vxlan

if TYPE_CHECKING:
    from tracer.correlate import PointFrames

START_NS = 1_700_000_000_000_000_000
Direction = Literal["forward", "reverse"]


@dataclass(frozen=True)
class Stage:
    """Where a forward packet is seen, in path order; reverse packets cross the stages backwards.

    `tuple5` is the forward tuple at this sighting; `delay_ns` the time since the previous stage;
    `routed` how many routed hops (TTL decrements) the packet crossed before it; `direction` the
    capture direction of forward packets (reverse packets get the opposite).
    """

    point: str
    iface: str | None
    direction: int
    tuple5: Tuple5
    delay_ns: int = 0
    routed: int = 0
    vxlan: Vxlan | None = None


@dataclass(frozen=True)
class Step:
    """One packet of an exchange; addresses and ports come from the stages."""

    direction: Direction
    kind: str
    pkt: Pkt
    gap_ns: int = 20_000  # sent this long after the previous packet reached its end
    retransmission: int = 0


@dataclass(frozen=True)
class TruthPacket:
    """One packet and every frame that shows it, in path order."""

    id: int
    kind: str
    direction: Direction
    sightings: tuple[tuple[str, int], ...]  # (point, frame index in that point's capture)
    tuples: tuple[Tuple5, ...]  # the tuple at each sighting
    true_ns: tuple[int, ...]  # true time of each sighting (no clock offset)
    retransmission: int = 0


@dataclass(frozen=True)
class Scenario:
    """Captures and ground truth. `offsets[domain]`: domain clock = true time + offset."""

    name: str
    points: tuple[CapturePoint, ...]
    frames: Mapping[str, tuple[Sighting, ...]]
    packets: tuple[TruthPacket, ...]
    stages: tuple[Stage, ...]
    offsets: Mapping[str, int]
    client: Tuple5
    backend: Endpoint | None
    forward_translations: tuple[tuple[int, Translation], ...]  # (stage index, rewrite before it)
    reverse_translations: tuple[tuple[int, Translation], ...]  # (stage index, rewrite after it)
    ifnames: Mapping[str, Mapping[int, str]] = field(default_factory=dict)

    def domain(self, point: str) -> str:
        p = next(p for p in self.points if p.name == point)
        return p.node if p.node is not None else p.name

    def columns(self, point: str) -> Frames:
        return frames_from_specs(self.frames[point], path=f"{point}.pcap")

    def point_frames(self) -> list[PointFrames]:
        from tracer.correlate import PointFrames

        out = []
        for p in self.points:
            frames = self.columns(p.name)
            out.append(PointFrames(p, frames, dict(frames.interfaces)))
        return out

    def first(self, kind: str, direction: Direction | None = None) -> TruthPacket:
        return next(
            p
            for p in self.packets
            if p.kind == kind and (direction is None or p.direction == direction)
        )


def _flip(direction: int) -> int:
    return {DIR_IN: DIR_OUT, DIR_OUT: DIR_IN}.get(direction, DIR_UNKNOWN)


def _translation(before: Tuple5, after: Tuple5, reply: bool) -> Translation | None:
    kind = translation_kind(before, after, reply)
    return None if kind is None else Translation(kind, before, after)


def _port(ep: Endpoint) -> int | None:
    return ep.port


def build_scenario(
    name: str,
    points: Sequence[CapturePoint],
    stages: Sequence[Stage],
    steps: Sequence[Step],
    offsets: Mapping[str, int] | None = None,
    start_ns: int = START_NS,
) -> Scenario:
    """Route each step through the stages (reverse steps backwards) and stamp every sighting."""
    offsets = dict(offsets or {})
    by_name = {p.name: p for p in points}
    hops_total = stages[-1].routed
    per_point: dict[str, list[tuple[int, int, Sighting]]] = {p.name: [] for p in points}
    raw_truth: list[tuple[Step, list[tuple[str, int]], list[Tuple5], list[int]]] = []
    t = start_ns
    order_no = 0
    for pid, step in enumerate(steps):
        t += step.gap_ns
        forward = step.direction == "forward"
        idx = list(range(len(stages))) if forward else list(range(len(stages) - 1, -1, -1))
        marks: list[tuple[str, int]] = []
        tuples: list[Tuple5] = []
        times: list[int] = []
        prev: int | None = None
        for k in idx:
            st = stages[k]
            if prev is not None:
                t += st.delay_ns if forward else stages[prev].delay_ns
            prev = k
            tup = st.tuple5 if forward else st.tuple5.reversed()
            ttl = 64 - (st.routed if forward else hops_total - st.routed)
            pkt = replace(
                step.pkt,
                src=tup.src.ip,
                dst=tup.dst.ip,
                sport=_port(tup.src),
                dport=_port(tup.dst),
                ttl=ttl,
            )
            vx = st.vxlan
            if vx is not None and not forward:
                vx = replace(vx, src=vx.dst, dst=vx.src)
            point = by_name[st.point]
            domain = point.node if point.node is not None else point.name
            stamped = t + offsets.get(domain, 0)
            sighting = Sighting(
                stamped,
                pkt,
                st.iface,
                st.direction if forward else _flip(st.direction),
                vx,
                pid,
            )
            per_point[st.point].append((stamped, order_no, sighting))
            marks.append((st.point, order_no))
            order_no += 1
            tuples.append(tup)
            times.append(t)
        raw_truth.append((step, marks, tuples, times))

    frames: dict[str, tuple[Sighting, ...]] = {}
    position: dict[int, int] = {}
    for pname, rows in per_point.items():
        rows.sort(key=lambda r: (r[0], r[1]))
        frames[pname] = tuple(r[2] for r in rows)
        for i, r in enumerate(rows):
            position[r[1]] = i
    packets = tuple(
        TruthPacket(
            pid,
            step.kind,
            step.direction,
            tuple((pt, position[o]) for pt, o in marks),
            tuple(tuples),
            tuple(times),
            step.retransmission,
        )
        for pid, (step, marks, tuples, times) in enumerate(raw_truth)
    )
    fwd_tr: list[tuple[int, Translation]] = []
    rev_tr: list[tuple[int, Translation]] = []
    for k in range(1, len(stages)):
        a, b = stages[k - 1].tuple5, stages[k].tuple5
        tr = _translation(a, b, reply=False)
        if tr is not None:
            fwd_tr.append((k, tr))
        rtr = _translation(b.reversed(), a.reversed(), reply=True)
        if rtr is not None:
            rev_tr.append((k - 1, rtr))
    client = stages[0].tuple5
    last = stages[-1].tuple5
    dnat = any(tr.kind in ("DNAT", "DNAT+SNAT") for _, tr in fwd_tr)
    return Scenario(
        name=name,
        points=tuple(points),
        frames=frames,
        packets=packets,
        stages=tuple(stages),
        offsets=offsets,
        client=client,
        backend=last.dst if dnat else None,
        forward_translations=tuple(fwd_tr),
        reverse_translations=tuple(rev_tr),
    )

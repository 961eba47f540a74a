"""Synthetic captures with offloads and sequence rewrites, and their ground truth.

- `tso_scenario`: the client's capture sees one TSO/GSO super-segment (64 KB by default) that the
  wire carries as MSS-sized segments (IP IDs id..id+n-1, one TSval, PSH on the last); node-a
  sees the wire segments, the server sees them merged again by GRO (`gro` segments per merge,
  the first segment's IP ID, stamped when the merge's last segment arrived). Truth: which wire
  segments each super-segment carries and which byte's time it stands for.
- `isn_shift_scenario`: a firewall between node-a and the server adds a constant to the
  client's and the server's sequence numbers (and the peer's acks), and clamps the SYN's MSS.
- `ipv6_retransmit_scenario`: IPv6 without TCP timestamps (no IP ID, no TSval): a request sent
  twice, optionally with the first copy lost before the server.
- `write_offload_pcaps`: the captures as pcap files, optionally with IPv4 total length 0 on the
  sender's super-segments (as a capture before TSO shows them).

Built on `tracer.testing.synth` (same `Scenario`, `TruthPacket`, `Sighting`). Nothing here sends
traffic; files are written only where the caller asks.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

from tracer.model import CapturePoint, Tuple5
from tracer.pcap.columns import DIR_IN, DIR_OUT, TH_ACK, TH_FIN, TH_PSH, TH_SYN
from tracer.testing.synth import (
    START_NS,
    Scenario,
    Stage,
    TruthPacket,
    dnat_scenario,
    dnat_topology,
    tcp_segment,
)
from tracer.testing.wire import ETHERNET, Pkt, Sighting, frame_bytes

__all__ = [
    "OffloadScenario",
    "SuperTruth",
    "drop_sighting",
    "ipv6_retransmit_scenario",
    "isn_shift_scenario",
    "tso_scenario",
    "write_offload_pcaps",
]

Byte = Literal["first", "last"]


@dataclass(frozen=True)
class SuperTruth:
    """One super-segment frame: the wire segments that carry its bytes, per point.

    `covers[point]` lists that point's frames of the wire segments, in sequence order;
    `byte` is the byte whose time the super-segment's timestamp is (first: sent before the NIC
    cut it; last: a GRO merge, complete when its last segment arrived); `packet` the truth
    packet (wire segment) it belongs to.
    """

    point: str
    frame: int
    byte: Byte
    seq: int
    length: int
    covers: Mapping[str, tuple[int, ...]]
    packet: int


@dataclass(frozen=True)
class OffloadScenario:
    """A scenario (captures and per-packet truth) with its super-segments."""

    scenario: Scenario
    supers: tuple[SuperTruth, ...]
    mss: int
    size: int  # bytes of the request carried as a super-segment
    delays_ns: tuple[int, int, int]  # client -> node-a veth, veth -> eth0, eth0 -> server


def _flip(direction: int) -> int:
    return {DIR_IN: DIR_OUT, DIR_OUT: DIR_IN}.get(direction, direction)


class _Builder:
    """Collects sightings per point (stamped by each point's clock) and the truth packets."""

    def __init__(
        self,
        points: Sequence[CapturePoint],
        stages: Sequence[Stage],
        offsets: Mapping[str, int],
    ) -> None:
        self.points = tuple(points)
        self.stages = tuple(stages)
        self.offsets = dict(offsets)
        self.by_name = {p.name: p for p in points}
        self.rows: dict[str, list[tuple[int, int, Sighting]]] = {p.name: [] for p in points}
        self.truth: list[tuple[str, str, list[int], list[Tuple5], list[int]]] = []
        self.order = 0

    def packet(self, kind: str, direction: str) -> int:
        self.truth.append((kind, direction, [], [], []))
        return len(self.truth) - 1

    def sight(self, pid: int, k: int, forward: bool, pkt: Pkt, t_true: int) -> None:
        st = self.stages[k]
        hops = self.stages[-1].routed
        tup = st.tuple5 if forward else st.tuple5.reversed()
        ttl = 64 - (st.routed if forward else hops - st.routed)
        wire = replace(
            pkt,
            src=tup.src.ip,
            dst=tup.dst.ip,
            sport=tup.src.port,
            dport=tup.dst.port,
            ttl=ttl,
        )
        point = self.by_name[st.point]
        domain = point.node if point.node is not None else point.name
        stamped = t_true + self.offsets.get(domain, 0)
        direction = st.direction if forward else _flip(st.direction)
        s = Sighting(stamped, wire, st.iface, direction, None, pid)
        self.rows[st.point].append((stamped, self.order, s))
        _, _, marks, tuples, times = self.truth[pid]
        marks.append(self.order)
        tuples.append(tup)
        times.append(t_true)
        self.order += 1

    def times(self, forward: bool, t0: int) -> list[int]:
        """True time at each stage index for a packet entering its way at t0."""
        n = len(self.stages)
        out = [0] * n
        idx = list(range(n)) if forward else list(range(n - 1, -1, -1))
        t = t0
        prev: int | None = None
        for k in idx:
            if prev is not None:
                t += self.stages[k].delay_ns if forward else self.stages[prev].delay_ns
            out[k] = t
            prev = k
        return out

    def route(self, kind: str, direction: str, pkt: Pkt, t0: int) -> int:
        """Every stage sees the packet; returns the true time it reached the far end."""
        forward = direction == "forward"
        pid = self.packet(kind, direction)
        ts = self.times(forward, t0)
        idx = range(len(self.stages)) if forward else range(len(self.stages) - 1, -1, -1)
        for k in idx:
            self.sight(pid, k, forward, pkt, ts[k])
        return ts[-1] if forward else ts[0]

    def scenario(self, name: str) -> Scenario:
        frames: dict[str, tuple[Sighting, ...]] = {}
        position: dict[int, tuple[str, int]] = {}
        for pname, rows in self.rows.items():
            rows.sort(key=lambda r: (r[0], r[1]))
            frames[pname] = tuple(r[2] for r in rows)
            for i, r in enumerate(rows):
                position[r[1]] = (pname, i)
        packets = []
        for pid, (kind, direction, marks, tuples, times) in enumerate(self.truth):
            d: Literal["forward", "reverse"] = "forward" if direction == "forward" else "reverse"
            packets.append(
                TruthPacket(
                    pid,
                    kind,
                    d,
                    tuple(position[o] for o in marks),
                    tuple(tuples),
                    tuple(times),
                )
            )
        first = self.stages[0].tuple5
        last = self.stages[-1].tuple5
        return Scenario(
            name=name,
            points=self.points,
            frames=frames,
            packets=tuple(packets),
            stages=self.stages,
            offsets=self.offsets,
            client=first,
            backend=last.dst if last.dst != first.dst else None,
            forward_translations=(),
            reverse_translations=(),
        )


def tso_scenario(
    *,
    size: int = 64_000,
    mss: int = 1448,
    gro: int = 8,
    ipv6: bool = False,
    timestamps: bool = True,
    offsets: Mapping[str, int] | None = None,
    serialise_ns: int = 1_200,
    delays_ns: tuple[int, int, int] = (15_000, 30_000, 120_000),
    seed: int = 5,
    response_size: int = 0,
) -> OffloadScenario:
    """A connection whose request leaves the client as one TSO super-segment of `size` bytes.

    The client's capture (before TSO) shows the super-segment; node-a sees every wire segment
    on the pod's veth and on eth0 (after DNAT); the server sees GRO merges of `gro` segments
    (`gro=1`: the wire segments). Wire segment k leaves `serialise_ns * k` after the first.
    With `response_size`, the server's answer is a TSO super-segment of that many bytes too
    (wire segments at node-a, GRO merges at the client).
    Offsets: domain clock = true time + offset (domains node-a and node-b).
    """
    if size <= mss:
        raise ValueError("a super-segment is larger than one MSS")
    rng = random.Random(seed)
    points, stages = dnat_topology(ipv6, delays_ns)
    b = _Builder(points, stages, dict(offsets or {}))
    isn_c, isn_s = rng.getrandbits(32), rng.getrandbits(32)
    id_c, id_s = rng.getrandbits(16), rng.getrandbits(16)
    ts_c, ts_s = rng.getrandbits(31), rng.getrandbits(31)
    payload = bytes(rng.getrandbits(8) for _ in range(size))

    def tcp(seq: int, ack: int, flags: int, data: bytes, ip_id: int, tsval: int, tsecr: int) -> Pkt:
        return tcp_segment(
            seq, ack, flags, data, ip_id, tsval, tsecr, mss=mss, timestamps=timestamps
        )

    t = START_NS
    c, s = isn_c, isn_s
    t = b.route("syn", "forward", tcp(c, 0, TH_SYN, b"", id_c, ts_c, 0), t)
    t = b.route(
        "syn-ack", "reverse", tcp(s, c + 1, TH_SYN | TH_ACK, b"", 0, ts_s, ts_c), t + 20_000
    )
    c, s = c + 1, s + 1
    id_c += 1
    ts_c += 1
    t = b.route("ack", "forward", tcp(c, s, TH_ACK, b"", id_c, ts_c, ts_s), t + 20_000)
    id_c += 1

    last_stage = len(stages) - 1
    pending: list[tuple[int, Byte, int, int, int, list[int]]] = []
    # (order token, byte, seq, length, truth packet, order tokens of the wire segments)

    def offloaded(
        forward: bool, seq: int, ack: int, data: bytes, ip_id: int, tv: int, te: int, t0: int
    ) -> int:
        """One TSO super-segment at the sender, wire segments on the way, GRO at the receiver.

        Returns the true time the last segment reached the receiver."""
        direction = "forward" if forward else "reverse"
        sender, receiver = (0, last_stage) if forward else (last_stage, 0)
        wire = range(1, last_stage) if gro > 1 else range(1, last_stage + 1)
        if not forward:
            wire = range(last_stage - 1, 0, -1) if gro > 1 else range(last_stage - 1, -1, -1)
        n = -(-len(data) // mss)
        chunks = [data[k * mss : (k + 1) * mss] for k in range(n)]
        pids: list[int] = []
        orders: list[list[int]] = []
        arrive: list[int] = []
        for k, chunk in enumerate(chunks):
            flags = TH_ACK | (TH_PSH if k == n - 1 else 0)
            seg = tcp(seq + k * mss, ack, flags, chunk, ip_id + k, tv, te)
            pid = b.packet("data", direction)
            pids.append(pid)
            ts = b.times(forward, t0 + k * serialise_ns)
            mine = []
            for st in wire:
                if st == sender:
                    continue
                mine.append(b.order)
                b.sight(pid, st, forward, seg, ts[st])
            orders.append(mine)
            arrive.append(ts[receiver])
        big = tcp(seq, ack, TH_ACK | TH_PSH, data, ip_id, tv, te)
        pending.append((b.order, "first", seq, len(data), pids[0], [o for x in orders for o in x]))
        b.sight(pids[0], sender, forward, big, t0)
        if gro > 1:
            for g0 in range(0, n, gro):
                g1 = min(g0 + gro, n) - 1
                merged_data = b"".join(chunks[g0 : g1 + 1])
                flags = TH_ACK | (TH_PSH if g1 == n - 1 else 0)
                merged = tcp(seq + g0 * mss, ack, flags, merged_data, ip_id + g0, tv, te)
                covered = [o for x in orders[g0 : g1 + 1] for o in x]
                pending.append(
                    (b.order, "last", seq + g0 * mss, len(merged_data), pids[g1], covered)
                )
                b.sight(pids[g1], receiver, forward, merged, arrive[g1])
        return arrive[-1]

    # The request: one super-segment at the client, wire segments after it.
    t = offloaded(True, c, s, payload, id_c, ts_c, ts_s, t + 50_000)
    id_c += -(-size // mss)
    c += size

    # The server acknowledges everything once, answers, and both sides close.
    t += 40_000
    ts_s += 1
    t = b.route("ack", "reverse", tcp(s, c, TH_ACK, b"", id_s, ts_s, ts_c), t)
    ts_s += 1
    if response_size:
        resp = bytes(rng.getrandbits(8) for _ in range(response_size))
        t = offloaded(False, s, c, resp, id_s + 1, ts_s, ts_c, t + 500_000)
        id_s += -(-response_size // mss)
    else:
        resp = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
        t = b.route(
            "data", "reverse", tcp(s, c, TH_ACK | TH_PSH, resp, id_s + 1, ts_s, ts_c), t + 500_000
        )
    s += len(resp)
    ts_c += 1
    t = b.route("ack", "forward", tcp(c, s, TH_ACK, b"", id_c, ts_c, ts_s), t + 20_000)
    ts_c += 1
    t = b.route("fin", "forward", tcp(c, s, TH_FIN | TH_ACK, b"", id_c + 1, ts_c, ts_s), t + 20_000)
    c += 1
    ts_s += 1
    t = b.route("fin", "reverse", tcp(s, c, TH_FIN | TH_ACK, b"", id_s + 2, ts_s, ts_c), t + 20_000)
    s += 1
    ts_c += 1
    b.route("ack", "forward", tcp(c, s, TH_ACK, b"", id_c + 2, ts_c, ts_s), t + 20_000)

    scenario = b.scenario("tso")
    position = _positions(b)
    supers = []
    for order, byte, seq0, length, pid, covered in pending:
        point, frame = position[order]
        covers: dict[str, tuple[int, ...]] = {}
        for o in covered:
            pt, fr = position[o]
            covers[pt] = (*covers.get(pt, ()), fr)
        supers.append(SuperTruth(point, frame, byte, seq0 & 0xFFFFFFFF, length, covers, pid))
    return OffloadScenario(scenario, tuple(supers), mss, size, delays_ns)


def _positions(b: _Builder) -> dict[int, tuple[str, int]]:
    out: dict[int, tuple[str, int]] = {}
    for pname, rows in b.rows.items():
        for i, r in enumerate(sorted(rows, key=lambda r: (r[0], r[1]))):
            out[r[1]] = (pname, i)
    return out


def isn_shift_scenario(
    *,
    forward: int = 0x3A5F_0000,
    reverse: int = 0,
    mss_clamp: int | None = 1360,
    offsets: Mapping[str, int] | None = None,
    seed: int = 6,
    timestamps: bool = True,
) -> Scenario:
    """`dnat_scenario` with a firewall between node-a and the server that rewrites sequences.

    Towards the server it adds `forward` to seq (the client's ISN randomised) and `reverse` to
    ack; towards the client it subtracts `reverse` from seq and `forward` from ack; with
    `mss_clamp` it lowers the SYN's MSS option (TCPMSS --set-mss). The server's capture holds
    the rewritten packets; the truth (which frames are one packet) is unchanged.
    """
    sc = dnat_scenario(offsets=offsets, seed=seed, timestamps=timestamps)
    dir_of = {p.id: p.direction for p in sc.packets}
    rewritten = []
    for sg in sc.frames["server"]:
        p = sg.pkt
        fwd = dir_of[sg.packet] == "forward"
        own, peer = (forward, reverse) if fwd else (reverse, forward)
        ack = (p.ack + peer) & 0xFFFFFFFF if p.flags & TH_ACK else p.ack
        mss = p.mss
        if mss_clamp is not None and mss is not None and fwd:
            mss = min(mss, mss_clamp)
        new = replace(p, seq=(p.seq + own) & 0xFFFFFFFF, ack=ack, mss=mss)
        rewritten.append(replace(sg, pkt=new))
    frames = dict(sc.frames)
    frames["server"] = tuple(rewritten)
    return replace(sc, name="isn-shift", frames=frames)


def drop_sighting(sc: Scenario, point: str, frame: int) -> Scenario:
    """The scenario without one frame (a packet lost before it reached that point)."""
    frames = dict(sc.frames)
    frames[point] = tuple(s for i, s in enumerate(sc.frames[point]) if i != frame)
    packets = []
    for p in sc.packets:
        keep = [k for k, (pt, fr) in enumerate(p.sightings) if (pt, fr) != (point, frame)]
        sightings = tuple(
            (pt, fr - 1 if pt == point and fr > frame else fr)
            for pt, fr in (p.sightings[k] for k in keep)
        )
        packets.append(
            replace(
                p,
                sightings=sightings,
                tuples=tuple(p.tuples[k] for k in keep),
                true_ns=tuple(p.true_ns[k] for k in keep),
            )
        )
    return replace(sc, frames=frames, packets=tuple(packets))


def ipv6_retransmit_scenario(
    *, lost: bool = False, offsets: Mapping[str, int] | None = None, seed: int = 7
) -> Scenario:
    """IPv6 without TCP timestamps: the request is sent again 200 ms later (RTO).

    Nothing but time tells the two sends apart (IPv6 has no IP ID, there is no TSval). With
    `lost`, the first send never reaches the server (dropped after node-a).
    """
    sc = dnat_scenario(ipv6=True, timestamps=False, retransmit=True, offsets=offsets, seed=seed)
    if not lost:
        return sc
    original = next(p for p in sc.packets if p.kind == "data" and p.direction == "forward")
    at_server = next(fr for pt, fr in original.sightings if pt == "server")
    return drop_sighting(sc, "server", at_server)


def write_offload_pcaps(
    osc: OffloadScenario, directory: str | Path, *, total_length_zero: bool = False
) -> dict[str, Path]:
    """Each point's capture as a nanosecond Ethernet pcap (points/<name>.pcap under directory).

    With `total_length_zero`, the sender's super-segments carry IPv4 total length 0, as a
    capture taken before TSO shows them (the NIC fills the length in per segment).
    """
    zero = {(s.point, s.frame) for s in osc.supers if s.byte == "first"}
    out: dict[str, Path] = {}
    base = Path(directory)
    base.mkdir(parents=True, exist_ok=True)
    for p in osc.scenario.points:
        parts = [struct.pack("<IHHiIII", 0xA1B23C4D, 2, 4, 0, 0, 262144, ETHERNET)]
        for i, s in enumerate(osc.scenario.frames[p.name]):
            frame = bytearray(frame_bytes(s, ETHERNET))
            if total_length_zero and (p.name, i) in zero and s.pkt.family == 4:
                frame[14 + 2 : 14 + 4] = b"\0\0"  # the header checksum is left as the stack had it
            sec, frac = divmod(s.t_ns, 1_000_000_000)
            parts.append(struct.pack("<IIII", sec, frac, len(frame), len(frame)))
            parts.append(bytes(frame))
        path = base / f"{p.name}.pcap"
        path.write_bytes(b"".join(parts))
        out[p.name] = path
    return out

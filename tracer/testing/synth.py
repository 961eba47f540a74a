"""Synthetic captures with known ground truth: what every capture point sees of one exchange.

A scenario is a list of `Stage`s (one per sighting of a forward packet: point, interface,
direction, the tuple at that sighting, the delay since the previous one) and an exchange of
packets (`Step`s: a TCP connection, a DNS query and answer, a ping). Routing the exchange
through the stages gives each point's frames, stamped by that point's clock (true time plus
the node's offset), and the truth: which frames are the same packet, the tuple at every
sighting, the translations, the offsets. `frames_from_specs` builds `Frames` columns directly so
correlator tests do not depend on the capture reader. Nothing here sends traffic.
"""

from __future__ import annotations

import json
import random
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
import numpy.typing as npt

from tracer.model import CapturePoint, Endpoint, Translation, TranslationKind, Tuple5
from tracer.pcap.columns import (
    COLUMNS,
    DIR_IN,
    DIR_OUT,
    DIR_UNKNOWN,
    OPT_MSS,
    OPT_TS,
    TH_ACK,
    TH_FIN,
    TH_PSH,
    TH_SYN,
    Frames,
    payload_hash,
)
from tracer.pcap.decode import ICMP_ERROR_TYPES, quoted_fields
from tracer.testing.wire import (
    ETHERNET,
    IPPROTO,
    LINUX_SLL2,
    Pkt,
    Sighting,
    Vxlan,
    interface_ids,
    ip_bytes,
    write_bulk_pcap,
    write_pcap,
    write_pcapng,
)

if TYPE_CHECKING:
    from tracer.correlate import PointFrames

__all__ = [
    "ETHERNET",
    "LINUX_SLL2",
    "Pkt",
    "Scenario",
    "Sighting",
    "Stage",
    "Step",
    "TruthPacket",
    "Vxlan",
    "build_scenario",
    "bulk_dnat",
    "bulk_dnat_pcaps",
    "bulk_dnat_truth",
    "dns_scenario",
    "dnat_scenario",
    "frames_from_specs",
    "icmp_scenario",
    "loopback_scenario",
    "nodeport_scenario",
    "overlay_scenario",
    "tcp_exchange",
    "write_pcap",
    "write_pcapng",
]

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
    dst = before.dst != after.dst
    src = before.src != after.src
    if not (dst or src):
        return None
    kind: TranslationKind
    if reply:
        # On a reply, conntrack restores the source (undoing DNAT) and the destination (SNAT).
        kind = "un-DNAT+un-SNAT" if dst and src else ("un-DNAT" if src else "un-SNAT")
    else:
        kind = "DNAT+SNAT" if dst and src else ("DNAT" if dst else "SNAT")
    return Translation(kind, before, after)


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


# ----------------------------------------------------------------------------- exchanges


def tcp_exchange(
    rng: random.Random,
    request: bytes = b"GET / HTTP/1.1\r\nHost: web\r\n\r\n",
    response: bytes = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
    *,
    mss: int = 1448,
    timestamps: bool = True,
    retransmit_request: bool = False,
    server_think_ns: int = 2_000_000,
) -> list[Step]:
    """A whole TCP connection: handshake, request, response (in MSS segments), FIN both ways.

    IP IDs follow Linux: a per-socket counter from a random start on each side, 0 on the
    SYN-ACK (built from a request socket). TSvals start at a random per-connection offset.
    With `retransmit_request` the request is sent again 200 ms later (new IP ID and TSval).
    """
    isn_c, isn_s = rng.getrandbits(32), rng.getrandbits(32)
    id_c, id_s = rng.getrandbits(16), rng.getrandbits(16)
    ts_c, ts_s = rng.getrandbits(31), rng.getrandbits(31)
    steps: list[Step] = []
    last_ts = {"forward": 0, "reverse": 0}

    def pkt(direction: Direction, seq: int, ack: int, flags: int, payload: bytes = b"") -> Pkt:
        nonlocal id_c, id_s, ts_c, ts_s
        if direction == "forward":
            ip_id, id_c = id_c, (id_c + 1) & 0xFFFF
            ts_c += 1
            tsval = ts_c
            tsecr = last_ts["reverse"]
        else:
            if flags & TH_SYN:
                ip_id = 0
            else:
                ip_id, id_s = id_s, (id_s + 1) & 0xFFFF
            ts_s += 1
            tsval = ts_s
            tsecr = last_ts["forward"]
        last_ts[direction] = tsval
        return Pkt(
            "tcp",
            "0.0.0.0",
            "0.0.0.0",
            seq=seq & 0xFFFFFFFF,
            ack=ack & 0xFFFFFFFF,
            flags=flags,
            payload=payload,
            ip_id=ip_id,
            tsval=tsval if timestamps else None,
            tsecr=tsecr if timestamps else None,
            mss=mss if flags & TH_SYN else None,
        )

    c, s = isn_c, isn_s
    steps.append(Step("forward", "syn", pkt("forward", c, 0, TH_SYN)))
    steps.append(Step("reverse", "syn-ack", pkt("reverse", s, c + 1, TH_SYN | TH_ACK)))
    c += 1
    s += 1
    steps.append(Step("forward", "ack", pkt("forward", c, s, TH_ACK)))
    data = pkt("forward", c, s, TH_PSH | TH_ACK, request)
    steps.append(Step("forward", "data", data))
    if retransmit_request:
        again = pkt("forward", c, s, TH_PSH | TH_ACK, request)
        steps.append(Step("forward", "data", again, gap_ns=200_000_000, retransmission=1))
    c += len(request)
    steps.append(Step("reverse", "ack", pkt("reverse", s, c, TH_ACK)))
    chunks = [response[i : i + mss] for i in range(0, len(response), mss)] or [b""]
    for n, chunk in enumerate(chunks):
        gap = server_think_ns if n == 0 else 5_000
        steps.append(Step("reverse", "data", pkt("reverse", s, c, TH_PSH | TH_ACK, chunk), gap))
        s += len(chunk)
    steps.append(Step("forward", "ack", pkt("forward", c, s, TH_ACK)))
    steps.append(Step("forward", "fin", pkt("forward", c, s, TH_FIN | TH_ACK)))
    c += 1
    steps.append(Step("reverse", "fin", pkt("reverse", s, c, TH_FIN | TH_ACK)))
    s += 1
    steps.append(Step("forward", "ack", pkt("forward", c, s, TH_ACK)))
    return steps


def dns_query(txid: int, name: str) -> bytes:
    """A DNS query for an A record (RFC 1035 section 4.1)."""
    qname = b"".join(bytes((len(p),)) + p.encode() for p in name.split(".")) + b"\0"
    return struct.pack("!HHHHHH", txid, 0x0100, 1, 0, 0, 0) + qname + struct.pack("!HH", 1, 1)


def dns_answer(query: bytes, address: str) -> bytes:
    """The answer to `query` with one A record (name compressed to the question, 0xC00C)."""
    txid = struct.unpack("!H", query[:2])[0]
    rdata = bytes(int(x) for x in address.split("."))
    answer = struct.pack("!HHHIH", 0xC00C, 1, 1, 30, 4) + rdata
    return struct.pack("!HHHHHH", txid, 0x8180, 1, 1, 0, 0) + query[12:] + answer


# ----------------------------------------------------------------------------- scenarios


def icmp_quote(pkt: Pkt) -> bytes:
    """The body of an ICMP error about `pkt`: its IP header and first 8 bytes of L4 (RFC 792)."""
    whole = ip_bytes(pkt)
    return whole[: (20 if pkt.family == 4 else 40) + 8]


def _ep(ip: str, port: int | None) -> Endpoint:
    return Endpoint(ip, port)


def _points(*specs: tuple[str, str, str | None, str | None]) -> tuple[CapturePoint, ...]:
    return tuple(
        CapturePoint(name, role, f"points/{name}.pcap", node=node, interface=iface)
        for name, role, node, iface in specs
    )


def dnat_scenario(
    *,
    ipv6: bool = False,
    offsets: Mapping[str, int] | None = None,
    retransmit: bool = False,
    timestamps: bool = True,
    seed: int = 1,
    start_ns: int = START_NS,
    response: bytes = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
    delays_ns: Sequence[int] = (15_000, 30_000, 120_000),
    client_port: int = 53700,
) -> Scenario:
    """Client pod -> ClusterIP 10.96.0.100:80, DNAT on node-a to 10.244.2.9:8080 (routed CNI).

    Points: the client pod (on node-a), node-a (-i any: the pod's veth in, eth0 out) and the
    server pod (on node-b, its own clock).
    """
    if ipv6:
        client, svc, backend = "fd00:10:244:1::7", "fd00:10:96::100", "fd00:10:244:2::9"
    else:
        client, svc, backend = "10.244.1.7", "10.96.0.100", "10.244.2.9"
    before = Tuple5("tcp", _ep(client, client_port), _ep(svc, 80))
    after = Tuple5("tcp", _ep(client, client_port), _ep(backend, 8080))
    points = _points(
        ("client", "client", "node-a", "eth0"),
        ("node-a", "node", "node-a", "any"),
        ("server", "server", "node-b", "eth0"),
    )
    d1, d2, d3 = delays_ns
    stages = (
        Stage("client", "eth0", DIR_OUT, before),
        Stage("node-a", "veth1a2b3c", DIR_IN, before, d1),
        Stage("node-a", "eth0", DIR_OUT, after, d2, routed=1),
        Stage("server", "eth0", DIR_IN, after, d3, routed=2),
    )
    steps = tcp_exchange(
        random.Random(seed), response=response, retransmit_request=retransmit, timestamps=timestamps
    )
    return build_scenario("dnat", points, stages, steps, offsets, start_ns)


def overlay_scenario(
    *, offsets: Mapping[str, int] | None = None, seed: int = 2, start_ns: int = START_NS
) -> Scenario:
    """Pod -> ClusterIP -> pod on another node over flannel VXLAN (UDP 8472, VNI 1).

    node-a sees the packet on the pod's veth (before DNAT), on cni0 (already DNATed: bridge
    netfilter), on flannel.1 and encapsulated on eth0; node-b the same in reverse order.
    """
    before = Tuple5("tcp", _ep("10.244.1.7", 41000), _ep("10.96.0.100", 80))
    after = Tuple5("tcp", _ep("10.244.1.7", 41000), _ep("10.244.2.9", 8080))
    vx = Vxlan("192.168.0.2", "192.168.0.3", sport=51234)
    points = _points(
        ("client", "client", "node-a", "eth0"),
        ("node-a", "node", "node-a", "any"),
        ("node-b", "node", "node-b", "any"),
        ("server", "server", "node-b", "eth0"),
    )
    stages = (
        Stage("client", "eth0", DIR_OUT, before),
        Stage("node-a", "veth1a2b3c", DIR_IN, before, 12_000),
        Stage("node-a", "cni0", DIR_IN, after, 3_000),
        Stage("node-a", "flannel.1", DIR_OUT, after, 8_000, routed=1),
        Stage("node-a", "eth0", DIR_OUT, after, 6_000, routed=1, vxlan=vx),
        Stage("node-b", "eth0", DIR_IN, after, 150_000, routed=1, vxlan=vx),
        Stage("node-b", "flannel.1", DIR_IN, after, 7_000, routed=1),
        Stage("node-b", "cni0", DIR_OUT, after, 5_000, routed=2),
        Stage("node-b", "veth9f8e7d", DIR_OUT, after, 2_000, routed=2),
        Stage("server", "eth0", DIR_IN, after, 10_000, routed=2),
    )
    steps = tcp_exchange(random.Random(seed))
    return build_scenario("overlay", points, stages, steps, offsets, start_ns)


def nodeport_scenario(
    *, offsets: Mapping[str, int] | None = None, seed: int = 3, start_ns: int = START_NS
) -> Scenario:
    """External client -> nodeIP:30080; node-a DNATs to 10.244.2.9:8080 and masquerades the
    source to its flannel.1 address with a new source port (MASQUERADE --random-fully).

    Three clock domains: the external host, node-a and node-b (the server pod's node).
    """
    before = Tuple5("tcp", _ep("203.0.113.2", 45752), _ep("192.168.0.2", 30080))
    after = Tuple5("tcp", _ep("10.244.1.0", 16903), _ep("10.244.2.9", 8080))
    vx = Vxlan("192.168.0.2", "192.168.0.3", sport=40211)
    points = _points(
        ("external", "external", None, "eth0"),
        ("node-a", "node", "node-a", "any"),
        ("server", "server", "node-b", "eth0"),
    )
    stages = (
        Stage("external", "eth0", DIR_OUT, before),
        Stage("node-a", "eth0", DIR_IN, before, 400_000),
        Stage("node-a", "flannel.1", DIR_OUT, after, 20_000, routed=1),
        Stage("node-a", "eth0", DIR_OUT, after, 5_000, routed=1, vxlan=vx),
        Stage("server", "eth0", DIR_IN, after, 160_000, routed=2),
    )
    steps = tcp_exchange(random.Random(seed))
    return build_scenario("nodeport", points, stages, steps, offsets, start_ns)


def dns_scenario(
    *, offsets: Mapping[str, int] | None = None, txid: int = 0x5A17, start_ns: int = START_NS
) -> Scenario:
    """A DNS query over UDP to the cluster DNS Service 10.96.0.10:53, DNATed to CoreDNS."""
    before = Tuple5("udp", _ep("10.244.1.7", 41234), _ep("10.96.0.10", 53))
    after = Tuple5("udp", _ep("10.244.1.7", 41234), _ep("10.244.2.5", 53))
    points = _points(
        ("client", "client", "node-a", "eth0"),
        ("node-a", "node", "node-a", "any"),
        ("coredns", "dns", "node-b", "eth0"),
    )
    stages = (
        Stage("client", "eth0", DIR_OUT, before),
        Stage("node-a", "veth1a2b3c", DIR_IN, before, 14_000),
        Stage("node-a", "eth0", DIR_OUT, after, 25_000, routed=1),
        Stage("coredns", "eth0", DIR_IN, after, 110_000, routed=2),
    )
    query = dns_query(txid, "web.default.svc.cluster.local")
    answer = dns_answer(query, "10.96.0.100")
    steps = [
        Step("forward", "udp", Pkt("udp", "0.0.0.0", "0.0.0.0", payload=query, ip_id=0x1F2E)),
        Step("reverse", "udp", Pkt("udp", "0.0.0.0", "0.0.0.0", payload=answer), 300_000),
    ]
    return build_scenario("dns", points, stages, steps, offsets, start_ns)


def icmp_scenario(*, offsets: Mapping[str, int] | None = None, count: int = 2) -> Scenario:
    """`ping` from a pod to a pod on another node (routed): echo requests and replies."""
    fwd = Tuple5("icmp", _ep("10.244.1.7", None), _ep("10.244.2.9", None))
    points = _points(
        ("client", "client", "node-a", "eth0"),
        ("node-a", "node", "node-a", "any"),
        ("server", "server", "node-b", "eth0"),
    )
    stages = (
        Stage("client", "eth0", DIR_OUT, fwd),
        Stage("node-a", "veth1a2b3c", DIR_IN, fwd, 10_000),
        Stage("node-a", "eth0", DIR_OUT, fwd, 20_000, routed=1),
        Stage("server", "eth0", DIR_IN, fwd, 100_000, routed=2),
    )
    steps: list[Step] = []
    for n in range(1, count + 1):
        payload = struct.pack("!Q", 1_700_000_000 + n) + bytes(range(48))
        req = Pkt("icmp", "", "", payload=payload, icmp_type=8, icmp_id=0x1234, icmp_seq=n)
        steps.append(Step("forward", "icmp", replace(req, ip_id=0x4000 + n), 1_000_000_000))
        rep = replace(req, icmp_type=0, ip_id=0)
        steps.append(Step("reverse", "icmp", rep, 5_000))
    return build_scenario("icmp", points, stages, steps, offsets)


def loopback_scenario(*, seed: int = 4) -> Scenario:
    """A connection over `lo`: one capture sees every packet twice (out, then in)."""
    tup = Tuple5("tcp", _ep("127.0.0.1", 40000), _ep("127.0.0.1", 8080))
    points = _points(("lo", "node", "node-a", "lo"))
    stages = (Stage("lo", "lo", DIR_OUT, tup), Stage("lo", "lo", DIR_IN, tup, 4_000))
    return build_scenario("loopback", points, stages, tcp_exchange(random.Random(seed)))


# ----------------------------------------------------------------------------- columns


_ENCAP_PLAIN = {4: ("eth", "ipv4"), 6: ("eth", "ipv6")}
_ENCAP_VXLAN = ("eth", "ipv4", "udp", "vxlan")


def _l4_header_len(pkt: Pkt) -> int:
    if pkt.proto == "tcp":
        opts = (4 if pkt.mss is not None else 0) + (12 if pkt.tsval is not None else 0)
        return 20 + opts
    return 8


def frames_from_specs(sightings: Sequence[Sighting], path: str = "<synthetic>") -> Frames:
    """The columns a reader would produce for these sightings (as an Ethernet pcapng).

    Interface ids follow first appearance (like pcapng IDBs); `phash` uses the shared
    `payload_hash`; `payload_off` is -1 (there is no file behind these rows).
    """
    n = len(sightings)
    cols = {name: np.full(n, sentinel, dtype=dtype) for name, dtype, sentinel in COLUMNS}
    addresses: dict[str, int] = {}
    encaps: dict[tuple[str, ...], int] = {}
    ifaces: dict[str, int] = {}
    rows: dict[str, list[int]] = {name: [0] * n for name, _, _ in COLUMNS}
    for i, s in enumerate(sightings):
        p = s.pkt
        fam = p.family
        inner = _ENCAP_PLAIN[fam] + (p.proto,)
        stack = (*_ENCAP_VXLAN, *inner) if s.vxlan else inner
        r = rows
        r["t_ns"][i] = s.t_ns
        r["iface"][i] = ifaces.setdefault(s.iface or "any", len(ifaces))
        r["direction"][i] = s.direction
        r["encap"][i] = encaps.setdefault(stack, len(encaps))
        r["family"][i] = fam
        r["proto"][i] = IPPROTO[p.proto]
        r["src"][i] = addresses.setdefault(p.src, len(addresses))
        r["dst"][i] = addresses.setdefault(p.dst, len(addresses))
        r["ip_id"][i] = p.ip_id if fam == 4 else -1
        r["ttl"][i] = p.ttl
        r["payload_len"][i] = len(p.payload)
        r["pcap_len"][i] = len(p.payload)
        r["phash"][i] = payload_hash(p.payload)
        r["payload_off"][i] = -1
        hdr = (20 if fam == 4 else 40) + _l4_header_len(p)
        r["origlen"][i] = 14 + hdr + len(p.payload) + (50 if s.vxlan else 0)
        r["sport"][i] = -1
        r["dport"][i] = -1
        r["icmp_type"][i] = -1
        r["icmp_code"][i] = -1
        r["icmp_id"][i] = -1
        r["icmp_seq"][i] = -1
        for name in ("quoted_proto", "quoted_sport", "quoted_dport", "quoted_seq"):
            r[name][i] = -1
        if p.proto in ("tcp", "udp"):
            r["sport"][i] = p.sport or 0
            r["dport"][i] = p.dport or 0
        if p.proto == "tcp":
            r["seq"][i] = p.seq
            r["ack"][i] = p.ack
            r["tcp_flags"][i] = p.flags
            opts = 0
            if p.tsval is not None:
                opts |= OPT_TS
                r["tsval"][i] = p.tsval
                r["tsecr"][i] = p.tsecr or 0
            if p.mss is not None:
                opts |= OPT_MSS
                r["mss"][i] = p.mss
            r["opts"][i] = opts
        elif p.proto in ("icmp", "icmpv6"):
            default_type = 8 if p.proto == "icmp" else 128
            icmp_type = default_type if p.icmp_type is None else p.icmp_type
            r["icmp_type"][i] = icmp_type
            r["icmp_code"][i] = p.icmp_code
            if icmp_type in ICMP_ERROR_TYPES[IPPROTO[p.proto]]:
                # As the reader does: an error has no id/sequence, it quotes a packet.
                quote = quoted_fields(p.payload)
                r["quoted_proto"][i], r["quoted_sport"][i] = quote[0], quote[1]
                r["quoted_dport"][i], r["quoted_seq"][i] = quote[2], quote[3]
            else:
                r["icmp_id"][i] = p.icmp_id or 0
                r["icmp_seq"][i] = p.icmp_seq or 0
    for name, dtype, _ in COLUMNS:
        if n:
            cols[name] = np.asarray(rows[name], dtype=dtype)
    return Frames(
        path=path,
        linktypes=(ETHERNET,),
        columns=dict(cols),
        encaps=tuple(encaps),
        addresses=tuple(addresses),
        interfaces={v: k for k, v in ifaces.items()},
    )


# ----------------------------------------------------------------------------- bulk


def bulk_dnat(
    n_connections: int,
    *,
    seed: int = 0,
    offsets: Mapping[str, int] | None = None,
    spacing_ns: int = 50_000,
) -> tuple[tuple[CapturePoint, ...], dict[str, Frames]]:
    """Many overlapping copies of `dnat_scenario` as columns (see `_bulk`)."""
    points, frames, _, _, _ = _bulk(n_connections, seed, offsets, spacing_ns)
    return points, frames


@dataclass(frozen=True)
class BulkTruth:
    """Which packet every frame of a bulk run shows: `packet[point][i]` for frame i.

    Packet ids are connection * `per_connection` + the template packet's id, unique per run.
    """

    packet: Mapping[str, npt.NDArray[np.int64]]
    per_connection: int
    template: Scenario


def bulk_dnat_truth(
    n_connections: int,
    *,
    seed: int = 0,
    spacing_ns: int = 50_000,
    retransmit: bool = False,
    timestamps: bool = True,
) -> tuple[tuple[CapturePoint, ...], dict[str, Frames], BulkTruth]:
    """`bulk_dnat` (true times, no clock offsets) with the identity of every frame."""
    points, frames, rows, _, conn = _bulk(
        n_connections, seed, None, spacing_ns, retransmit=retransmit, timestamps=timestamps
    )
    template = dnat_scenario(retransmit=retransmit, timestamps=timestamps)
    per = max(p.id for p in template.packets) + 1
    packet: dict[str, npt.NDArray[np.int64]] = {}
    for p in points:
        ids = np.array([s.packet for s in template.frames[p.name]], dtype=np.int64)
        packet[p.name] = conn[p.name] * per + ids[rows[p.name]]
    return points, frames, BulkTruth(packet, per, template)


def bulk_dnat_pcaps(
    directory: str | Path,
    n_connections: int,
    *,
    seed: int = 0,
    offsets: Mapping[str, int] | None = None,
    spacing_ns: int = 50_000,
    any_capture: bool = False,
    ipv6: bool = False,
) -> tuple[tuple[CapturePoint, ...], dict[str, Path]]:
    """`bulk_dnat` written as one nanosecond pcap per point (<directory>/<name>.pcap).

    Ethernet frames by default. With `any_capture`, a point whose interface is "any" (the node)
    is written as `tcpdump -i any` writes it, LINUX_SLL2 frames carrying ifindexes, and the
    node's links as `ip -j link` JSON beside it (<directory>/<name>.links.json). With `ipv6`,
    the same connections over IPv6 (`dnat_scenario(ipv6=True)`).
    """
    points, frames, rows, templates, _ = _bulk(n_connections, seed, offsets, spacing_ns, ipv6=ipv6)
    out: dict[str, Path] = {}
    for p in points:
        path = Path(directory) / f"{p.name}.pcap"
        fr = frames[p.name]
        sll2 = any_capture and p.interface == "any"
        index = interface_ids(templates[p.name], start=1)
        write_bulk_pcap(
            path,
            templates[p.name],
            fr.columns,
            rows[p.name],
            fr.addresses,
            linktype=LINUX_SLL2 if sll2 else ETHERNET,
            ifindex=index,
        )
        if sll2:
            links = [{"ifindex": i, "ifname": name} for name, i in index.items()]
            (Path(directory) / f"{p.name}.links.json").write_text(json.dumps(links))
        out[p.name] = path
    return points, out


def _bulk(
    n_connections: int,
    seed: int,
    offsets: Mapping[str, int] | None,
    spacing_ns: int,
    *,
    retransmit: bool = False,
    timestamps: bool = True,
    ipv6: bool = False,
) -> tuple[
    tuple[CapturePoint, ...],
    dict[str, Frames],
    dict[str, npt.NDArray[np.int64]],
    dict[str, tuple[Sighting, ...]],
    dict[str, npt.NDArray[np.int64]],
]:
    """Many overlapping copies of `dnat_scenario`, built as columns with numpy (no objects).

    Each connection gets its own client address and port, ISNs, TSval offsets and IP IDs and
    starts `spacing_ns` after the previous one, so the connections interleave. 40 observations
    per connection (10 at the client, 20 at node-a, 10 at the server).
    """
    template = dnat_scenario(
        offsets=offsets, retransmit=retransmit, timestamps=timestamps, ipv6=ipv6
    )
    rng = np.random.default_rng(seed)
    n = n_connections
    isn_c = rng.integers(0, 1 << 32, n, dtype=np.int64)
    isn_s = rng.integers(0, 1 << 32, n, dtype=np.int64)
    ts_c = rng.integers(0, 1 << 31, n, dtype=np.int64)
    ts_s = rng.integers(0, 1 << 31, n, dtype=np.int64)
    id_c = rng.integers(0, 1 << 16, n, dtype=np.int64)
    id_s = rng.integers(0, 1 << 16, n, dtype=np.int64)
    start = np.arange(n, dtype=np.int64) * spacing_ns
    # Client n uses 10.<a>.<b>.<c> (a unique address) and a port from the ephemeral range.
    client_port = 32768 + (np.arange(n) % 28000)
    forward = {p.id: p.direction == "forward" for p in template.packets}
    out: dict[str, Frames] = {}
    template_rows: dict[str, npt.NDArray[np.int64]] = {}
    conn_rows: dict[str, npt.NDArray[np.int64]] = {}
    for point in template.points:
        base = template.columns(point.name)
        rows = template.frames[point.name]
        fwd = np.array([forward[s.packet] for s in rows], dtype=bool)
        m = len(rows)
        c = {k: np.asarray(v) for k, v in base.columns.items()}
        cols: dict[str, npt.NDArray[np.generic]] = {}
        for name, dtype, _ in COLUMNS:
            cols[name] = np.tile(c[name], n).astype(dtype)
        conn = np.repeat(np.arange(n), m)
        f = np.tile(fwd, n)
        with np.errstate(over="ignore"):
            seq = c["seq"].astype(np.int64)
            ack = c["ack"].astype(np.int64)
            tsv = c["tsval"].astype(np.int64)
            tse = c["tsecr"].astype(np.int64)
            ipid = c["ip_id"].astype(np.int64)
            seq_t, ack_t = np.tile(seq, n), np.tile(ack, n)
            own = np.where(f, isn_c[conn], isn_s[conn])
            peer = np.where(f, isn_s[conn], isn_c[conn])
            has_ack = (np.tile(c["tcp_flags"], n) & TH_ACK) != 0
            cols["seq"] = ((seq_t + own) & 0xFFFFFFFF).astype(np.uint32)
            cols["ack"] = np.where(has_ack, (ack_t + peer) & 0xFFFFFFFF, 0).astype(np.uint32)
            tso = np.where(f, ts_c[conn], ts_s[conn])
            tsp = np.where(f, ts_s[conn], ts_c[conn])
            tse_t = np.tile(tse, n)
            cols["tsval"] = ((np.tile(tsv, n) + tso) & 0xFFFFFFFF).astype(np.uint32)
            cols["tsecr"] = np.where(tse_t != 0, (tse_t + tsp) & 0xFFFFFFFF, 0).astype(np.uint32)
            ipid_t = np.tile(ipid, n)
            ido = np.where(f, id_c[conn], id_s[conn])
            cols["ip_id"] = np.where(ipid_t > 0, (ipid_t + ido) & 0xFFFF, ipid_t).astype(np.int32)
        cols["t_ns"] = np.tile(c["t_ns"], n) + start[conn]
        # Client address: a fresh address id per connection appended after the template's.
        client_id = base.addresses.index("fd00:10:244:1::7" if ipv6 else "10.244.1.7")
        n_addr = len(base.addresses)
        src, dst = np.tile(c["src"], n), np.tile(c["dst"], n)
        cols["src"] = np.where(src == client_id, n_addr + conn, src).astype(np.int32)
        cols["dst"] = np.where(dst == client_id, n_addr + conn, dst).astype(np.int32)
        sport, dport = np.tile(c["sport"], n), np.tile(c["dport"], n)
        cols["sport"] = np.where(sport == 53700, client_port[conn], sport).astype(np.int32)
        cols["dport"] = np.where(dport == 53700, client_port[conn], dport).astype(np.int32)
        order = np.argsort(cols["t_ns"], kind="stable")
        cols = {k: v[order] for k, v in cols.items()}
        template_rows[point.name] = np.tile(np.arange(m, dtype=np.int64), n)[order]
        conn_rows[point.name] = conn[order]
        ks = np.arange(n)
        if ipv6:
            extra = tuple(f"fd00:64::{k >> 16:x}:{k & 0xFFFF:x}" for k in ks.tolist())
        else:
            extra = tuple(f"10.{64 + (k >> 16)}.{(k >> 8) & 255}.{k & 255}" for k in ks.tolist())
        out[point.name] = Frames(
            path=f"{point.name}.pcap",
            linktypes=base.linktypes,
            columns=cols,
            encaps=base.encaps,
            addresses=base.addresses + extra,
            interfaces=dict(base.interfaces),
        )
    return template.points, out, template_rows, dict(template.frames), conn_rows

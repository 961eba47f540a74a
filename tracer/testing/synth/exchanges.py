"""Exchanges of packets and the named scenarios built from them.

`tcp_exchange` (a whole TCP connection as Linux sends it), `dns_query`/`dns_answer`,
`icmp_quote`, and the scenarios the tests share: DNAT to a pod on another node (IPv4 or IPv6),
the flannel VXLAN overlay, a NodePort with masquerade, DNS to the cluster DNS Service, ping, and
loopback. Nothing here sends traffic.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Mapping, Sequence
from dataclasses import replace

from tracer.model import CapturePoint, Endpoint, Tuple5
from tracer.pcap.columns import DIR_IN, DIR_OUT, TH_ACK, TH_FIN, TH_PSH, TH_SYN
from tracer.testing.synth.scenario import (
    START_NS,
    Direction,
    Scenario,
    Stage,
    Step,
    build_scenario,
)
from tracer.testing.wire import Pkt, Vxlan, ip_bytes


def tcp_segment(
    seq: int,
    ack: int,
    flags: int,
    payload: bytes,
    ip_id: int,
    tsval: int,
    tsecr: int,
    *,
    mss: int,
    timestamps: bool,
) -> Pkt:
    """One TCP segment (addresses and ports come from the stages); MSS only on a SYN."""
    return Pkt(
        "tcp",
        "0.0.0.0",
        "0.0.0.0",
        seq=seq & 0xFFFFFFFF,
        ack=ack & 0xFFFFFFFF,
        flags=flags,
        payload=payload,
        ip_id=ip_id & 0xFFFF,
        tsval=tsval if timestamps else None,
        tsecr=tsecr if timestamps else None,
        mss=mss if flags & TH_SYN else None,
    )


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
        return tcp_segment(
            seq, ack, flags, payload, ip_id, tsval, tsecr, mss=mss, timestamps=timestamps
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


def dnat_topology(
    ipv6: bool, delays_ns: Sequence[int], client_port: int = 53700
) -> tuple[tuple[CapturePoint, ...], tuple[Stage, ...]]:
    """The points and stages of `dnat_scenario`: client pod, node-a (DNAT), server pod."""
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
    return points, stages


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
    points, stages = dnat_topology(ipv6, delays_ns, client_port)
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

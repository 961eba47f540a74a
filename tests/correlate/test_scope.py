"""Chatter that repeats with identical bytes never moves a clock estimate or becomes a match
across nodes: IPv6 RS/NS/MLD, IPv4 mDNS/SSDP/DHCP, identical UDP probes from several senders."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from tracer.correlate import PointFrames, build_path, correlate, select
from tracer.correlate.scope import ambiguous_keys, link_scope_addresses
from tracer.pcap.columns import DIR_IN, DIR_OUT
from tracer.pcap.reader import read_frames
from tracer.testing.synth import Scenario, dnat_scenario
from tracer.testing.wire import Pkt, Sighting, write_pcapng

OFFSET = 250_000_000  # node-b's clock runs 0.25 s ahead of node-a's
SECOND = 1_000_000_000

# ICMPv6 (RFC 4861, RFC 3810) with the same bytes on every node: a router solicitation, an MLDv2
# report for the all-routers group, a neighbour solicitation for the router's address.
_RS = (133, bytes(4))
_MLD = (
    143,
    bytes(2) + b"\x00\x01" + b"\x04\x00\x00\x00" + bytes.fromhex("ff02" + "00" * 13 + "02"),
)
_NS = (135, bytes(4) + bytes.fromhex("fe80" + "00" * 13 + "01"))


def _v6_chatter(src: str) -> list[Pkt]:
    return [
        Pkt("icmpv6", src, "ff02::2", icmp_type=_RS[0], payload=_RS[1]),
        Pkt("icmpv6", src, "ff02::16", icmp_type=_MLD[0], payload=_MLD[1]),
        Pkt("icmpv6", src, "ff02::1:ff00:1", icmp_type=_NS[0], payload=_NS[1]),
        Pkt("udp", src, "ff02::1:2", 546, 547, payload=b"\x01\x00\x00\x01" + bytes(20)),
    ]


def _v4_chatter(src: str) -> list[Pkt]:
    mdns = bytes(12) + b"\x05_http\x04_tcp\x05local\x00\x00\x0c\x00\x01"
    return [
        Pkt("udp", src, "224.0.0.251", 5353, 5353, payload=mdns),
        Pkt("udp", src, "239.255.255.250", 1900, 1900, payload=b"M-SEARCH * HTTP/1.1\r\n\r\n"),
        Pkt("udp", "0.0.0.0", "255.255.255.255", 68, 67, payload=b"\x01\x01\x06\x00" + bytes(40)),
        Pkt("icmp", src, "169.254.1.1", icmp_type=8, icmp_id=1, icmp_seq=1, payload=bytes(8)),
    ]


def _probes(sender: str, pods: list[str]) -> list[Pkt]:
    """The same UDP datagram to several pods (a health checker's probe)."""
    return [Pkt("udp", sender, pod, 40000, 9000, payload=b"PING") for pod in pods]


def _with_chatter(sc: Scenario, *, phase_b: int, count_a: int, count_b: int) -> Scenario:
    """The scenario's captures full of chatter sent every second, from 20 s before the request.

    node-a's chatter shows at the client pod and on its veth at node-a; node-b's (the same
    bytes, another sender, another phase and count) at the server pod. node-a also probes two
    pods through its bridge, node-b two of its own: the same bytes from two senders.
    """
    v6 = ":" in sc.client.src.ip
    start = min(s.t_ns for frames in sc.frames.values() for s in frames) - 20 * SECOND
    chatter = _v6_chatter if v6 else _v4_chatter
    a_src, b_src = ("fe80::a", "fe80::b") if v6 else ("10.244.1.7", "10.244.2.9")
    a_pods = ["fd00:10:244:1::3", "fd00:10:244:1::4"] if v6 else ["10.244.1.3", "10.244.1.4"]
    b_pods = ["fd00:10:244:2::3", "fd00:10:244:2::9"] if v6 else ["10.244.2.3", "10.244.2.9"]
    node_a, node_b = ("fd00:50::11", "fd00:50::12") if v6 else ("192.168.50.11", "192.168.50.12")
    frames = {name: list(f) for name, f in sc.frames.items()}
    for k in range(count_a):
        t = start + k * SECOND
        for i, p in enumerate(chatter(a_src)):
            frames["client"].append(Sighting(t + i * 1000, p, "eth0", DIR_OUT))
            frames["node-a"].append(Sighting(t + i * 1000 + 7000, p, "veth1a2b3c", DIR_IN))
        for i, p in enumerate(_probes(node_a, a_pods)):
            frames["node-a"].append(Sighting(t + 500_000 + i * 1000, p, "cni0", DIR_OUT))
    for k in range(count_b):
        t = start + k * SECOND + phase_b + OFFSET
        for i, p in enumerate(chatter(b_src)):
            frames["server"].append(Sighting(t + i * 1000, p, "eth0", DIR_OUT))
        for i, p in enumerate(_probes(node_b, b_pods)):
            if p.dst == b_pods[1]:  # the server pod's own
                frames["server"].append(Sighting(t + 600_000 + i * 1000, p, "eth0", DIR_IN))
    ordered = {name: tuple(sorted(f, key=lambda s: s.t_ns)) for name, f in frames.items()}
    return replace(sc, frames=ordered)


def _read_back(sc: Scenario, tmp_path: Path) -> list[PointFrames]:
    """Through the real reader: each point written as a pcapng file and read again."""
    out = []
    for p in sc.points:
        path = tmp_path / f"{p.name}.pcapng"
        write_pcapng(path, sc.frames[p.name])
        frames = read_frames(path)
        out.append(PointFrames(p, frames, dict(frames.interfaces)))
    return out


def _check(points: list[PointFrames], sc: Scenario) -> None:
    corr = correlate(points)
    (clock,) = corr.clocks
    # The truth is the lab's (the scenario's) offset, never the analyzer's own output.
    assert abs(clock.offset_ns - OFFSET) <= clock.error_bound_ns
    assert clock.error_bound_ns < 1_000_000
    assert not any("negative one-way delay" in w for w in corr.warnings)
    path = build_path(corr, select(corr))
    assert [h.point for h in path.forward] == ["client", "node-a", "node-a", "server"]
    assert path.forward[0].tuple5 == sc.client
    # No chatter (nor probe) packet is matched across the two nodes.
    client_ip = sc.client.src.ip
    for conn in corr.connections:
        for j in conn.journeys:
            nodes = {o.point for o in j.observations} - {"client", "node-a"}
            if nodes and len({o.point for o in j.observations}) > len(nodes):
                assert conn.client.src.ip == client_ip and conn.client.dst.port == 80


def test_ipv6_capture_full_of_chatter_keeps_the_clock(tmp_path: Path) -> None:
    sc = _with_chatter(
        dnat_scenario(ipv6=True, offsets={"node-b": OFFSET}),
        phase_b=-400_000_000,
        count_a=40,
        count_b=45,
    )
    _check(_read_back(sc, tmp_path), sc)


def test_ipv4_capture_full_of_chatter_keeps_the_clock(tmp_path: Path) -> None:
    sc = _with_chatter(
        dnat_scenario(offsets={"node-b": OFFSET}), phase_b=-300_000_000, count_a=30, count_b=30
    )
    _check(_read_back(sc, tmp_path), sc)


@settings(max_examples=25, deadline=None)
@given(
    v6=st.booleans(),
    phase_b=st.integers(-SECOND + 1, SECOND - 1),
    count_a=st.integers(0, 12),
    count_b=st.integers(0, 12),
)
def test_chatter_never_moves_the_estimate(
    v6: bool, phase_b: int, count_a: int, count_b: int
) -> None:
    """Whatever the chatter's phase and count, the estimate is the one without it."""
    sc = dnat_scenario(ipv6=v6, offsets={"node-b": OFFSET})
    (quiet,) = correlate(sc.point_frames()).clocks
    noisy = _with_chatter(sc, phase_b=phase_b, count_a=count_a, count_b=count_b)
    corr = correlate(noisy.point_frames())
    (clock,) = corr.clocks
    assert (clock.offset_ns, clock.error_bound_ns) == (quiet.offset_ns, quiet.error_bound_ns)
    _check(noisy.point_frames(), noisy)


def test_link_scope_addresses() -> None:
    addrs = ["fe80::1", "ff02::16", "::", "fd00::7", "2001:db8::1", "224.0.0.22", "239.1.2.3"]
    addrs += ["169.254.3.4", "255.255.255.255", "0.0.0.0", "10.0.0.1", "192.168.50.1"]
    expect = [True, True, True, False, False, True, True, True, True, True, False, False]
    assert link_scope_addresses(addrs).tolist() == expect


def test_a_key_two_flows_show_at_one_vantage_is_ambiguous() -> None:
    # key 0: two flows on (point 0, iface 1, out); key 1: two flows but on different
    # interfaces; key 2: two flows where the interface is unknown (a plain pcap).
    kid = np.array([0, 0, 1, 1, 2, 2])
    pidx = np.array([0, 0, 0, 0, 1, 1])
    iface = np.array([1, 1, 1, 2, -1, -1])
    direction = np.array([DIR_OUT, DIR_OUT, DIR_OUT, DIR_OUT, DIR_IN, DIR_IN])
    flow = np.array([5, 6, 7, 8, 9, 10])
    assert ambiguous_keys(kid, 3, pidx, iface, direction, flow).tolist() == [True, False, False]


def test_encrypted_tunnel_packets_are_said_to_be_unmatched(tmp_path: Path) -> None:
    """WireGuard between the nodes: the inner packet cannot be read; the analysis says so
    plainly and still traces the request where it is in clear."""
    sc = dnat_scenario(offsets={"node-b": OFFSET})
    frames = {name: list(f) for name, f in sc.frames.items()}
    t0 = min(s.t_ns for s in frames["node-a"])
    for k in range(3):
        wg = Pkt("udp", "192.168.50.11", "192.168.50.12", 51820, 51820, payload=bytes([4, k]) * 40)
        frames["node-a"].append(Sighting(t0 + 20_000 + k * 50_000, wg, "eth0", DIR_OUT))
    noisy = replace(
        sc, frames={n: tuple(sorted(f, key=lambda s: s.t_ns)) for n, f in frames.items()}
    )
    corr = correlate(_read_back(noisy, tmp_path))
    (warning,) = [w for w in corr.warnings if "encrypted tunnel" in w]
    assert warning.startswith("point node-a: 3 packets of an encrypted tunnel")
    assert "could not be matched" in warning
    _check(_read_back(noisy, tmp_path), noisy)

"""ICMP and ICMPv6 type names, and the tuple of the packet an error quotes."""

from __future__ import annotations

import ipaddress
import struct

from hypothesis import given
from hypothesis import strategies as st

from tracer.model import Endpoint, Tuple5
from tracer.protocols.icmp import icmp_name, quoted_tuple


def test_icmp_names() -> None:
    assert icmp_name(8) == "echo-request"
    assert icmp_name(3, 3) == "destination-unreachable/port-unreachable"
    assert icmp_name(128, v6=True) == "echo-request"
    assert icmp_name(1, 4, v6=True) == "destination-unreachable/port-unreachable"
    assert icmp_name(42) == "type-42"


def _ipv4_tcp_header(src: str, dst: str, sport: int, dport: int) -> bytes:
    ip = struct.pack(
        "!BBHHHBBH4s4s",
        0x45,
        0,
        40,
        1,
        0,
        64,
        6,
        0,
        ipaddress.IPv4Address(src).packed,
        ipaddress.IPv4Address(dst).packed,
    )
    return ip + struct.pack("!HHI", sport, dport, 1)


ipv4 = st.ip_addresses(v=4).map(str)
ports = st.integers(min_value=0, max_value=65535)


@given(ipv4, ipv4, ports, ports)
def test_quoted_header_round_trips(src: str, dst: str, sport: int, dport: int) -> None:
    t = quoted_tuple(_ipv4_tcp_header(src, dst, sport, dport))
    assert t == Tuple5("tcp", Endpoint(src, sport), Endpoint(dst, dport))


@given(st.binary(max_size=80))
def test_quoted_header_never_raises(data: bytes) -> None:
    t = quoted_tuple(data)
    assert t is None or isinstance(t, Tuple5)


def test_quoted_ipv6_udp_header() -> None:
    src, dst = "fd00:10:244:1::7", "fd00:10:96::a"
    ip6 = struct.pack("!IHBB", 6 << 28, 8, 17, 64)
    ip6 += ipaddress.IPv6Address(src).packed + ipaddress.IPv6Address(dst).packed
    t = quoted_tuple(ip6 + struct.pack("!HHHH", 41234, 53, 8, 0))
    assert t == Tuple5("udp", Endpoint(src, 41234), Endpoint(dst, 53))
    assert quoted_tuple(ip6[:39]) is None  # too short for an IPv6 header

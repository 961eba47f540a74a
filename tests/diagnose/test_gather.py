"""The edge's payload decoding: the header an ICMP error quotes."""

from __future__ import annotations

import ipaddress
import struct

from hypothesis import given
from hypothesis import strategies as st

from tracer.diagnose.gather import quoted_tuple
from tracer.model import Endpoint, Tuple5


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

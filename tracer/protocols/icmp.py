"""ICMP (RFC 792) and ICMPv6 (RFC 4443): type names, and the packet an error quotes.

Pure: numbers or bytes in, data out; None for a quote too short to read.
"""

from __future__ import annotations

import ipaddress

from tracer.model import Endpoint, Tuple5

ICMP_TYPES = {
    0: "echo-reply",
    3: "destination-unreachable",
    4: "source-quench",
    5: "redirect",
    8: "echo-request",
    11: "time-exceeded",
    12: "parameter-problem",
    13: "timestamp",
    14: "timestamp-reply",
}
ICMP_UNREACH_CODES = {
    0: "net-unreachable",
    1: "host-unreachable",
    2: "protocol-unreachable",
    3: "port-unreachable",
    4: "fragmentation-needed",
    9: "net-prohibited",
    10: "host-prohibited",
    13: "admin-prohibited",
}
ICMPV6_TYPES = {
    1: "destination-unreachable",
    2: "packet-too-big",
    3: "time-exceeded",
    4: "parameter-problem",
    128: "echo-request",
    129: "echo-reply",
    133: "router-solicitation",
    134: "router-advertisement",
    135: "neighbor-solicitation",
    136: "neighbor-advertisement",
}
ICMPV6_UNREACH_CODES = {
    0: "no-route",
    1: "admin-prohibited",
    3: "address-unreachable",
    4: "port-unreachable",
}
# IP protocol numbers (IANA) a quoted header may carry, by the names the model uses.
_PROTO = {1: "icmp", 6: "tcp", 17: "udp", 58: "icmpv6", 132: "sctp"}


def icmp_name(icmp_type: int, code: int = 0, *, v6: bool = False) -> str:
    """The name of an ICMP (or ICMPv6) type, with the code where it says something."""
    names = ICMPV6_TYPES if v6 else ICMP_TYPES
    name = names.get(icmp_type, f"type-{icmp_type}")
    if icmp_type == (1 if v6 else 3):
        codes = ICMPV6_UNREACH_CODES if v6 else ICMP_UNREACH_CODES
        name += "/" + codes.get(code, f"code-{code}")
    return name


def quoted_tuple(payload: bytes) -> Tuple5 | None:
    """The tuple of the IP header (and first 8 L4 bytes) an ICMP error quotes (RFC 792/4443)."""
    if not payload:
        return None
    version = payload[0] >> 4
    if version == 4 and len(payload) >= 20:
        ihl = (payload[0] & 0x0F) * 4
        proto = payload[9]
        src = str(ipaddress.IPv4Address(payload[12:16]))
        dst = str(ipaddress.IPv4Address(payload[16:20]))
        l4 = ihl
    elif version == 6 and len(payload) >= 40:
        proto = payload[6]
        src = str(ipaddress.IPv6Address(payload[8:24]))
        dst = str(ipaddress.IPv6Address(payload[24:40]))
        l4 = 40
    else:
        return None
    name = _PROTO.get(proto, str(proto))
    sport = dport = None
    if proto in (6, 17, 132) and len(payload) >= l4 + 4:
        sport = int.from_bytes(payload[l4 : l4 + 2], "big")
        dport = int.from_bytes(payload[l4 + 2 : l4 + 4], "big")
    return Tuple5(name, Endpoint(src, sport), Endpoint(dst, dport))

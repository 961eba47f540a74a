"""Per-frame decoding, link layer to innermost IP packet, in plain Python.

This is the reference decoder: it handles every layout the reader supports (VLAN/QinQ, VXLAN,
Geneve, GRE, MPLS, IP-in-IP, IPv6 extension headers, any TCP option order) and the vectorised
fast path (`tracer.pcap.fast`) must give exactly its values on the layouts it takes over. It works
on the mapped file with absolute offsets, so `payload_off` needs no translation. It must not
raise on any byte string: a header cut by the snaplen sets OPT_TRUNCATED and keeps what was read.
"""

from __future__ import annotations

import mmap
import struct

from tracer.pcap.columns import (
    DIR_IN,
    DIR_OUT,
    DIR_UNKNOWN,
    OPT_FRAGMENT,
    OPT_MSS,
    OPT_SUPER,
    OPT_TRUNCATED,
    OPT_TS,
    PHASH_BYTES,
    payload_hash,
)

# What the decoder reads from: the mapped capture file, or bytes in tests.
Buffer = bytes | bytearray | memoryview | mmap.mmap


# Link types (https://www.tcpdump.org/linktypes.html).
LINKTYPE_NULL = 0
LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101
LINKTYPE_RAW_LEGACY = (12, 14)  # DLT_RAW as some BSDs numbered it, found in old files
LINKTYPE_LOOP = 108
LINKTYPE_LINUX_SLL = 113
LINKTYPE_IPV4 = 228
LINKTYPE_IPV6 = 229
LINKTYPE_LINUX_SLL2 = 276

# EtherTypes.
ETH_P_IP = 0x0800
ETH_P_IPV6 = 0x86DD
ETH_P_ARP = 0x0806
ETH_P_TEB = 0x6558  # transparent Ethernet bridging: Ethernet inside GRE/Geneve
ETH_P_MPLS_UC = 0x8847
ETH_P_MPLS_MC = 0x8848
VLAN_TPIDS = frozenset((0x8100, 0x88A8, 0x9100))  # 802.1Q, 802.1ad, the old QinQ value

# IP protocol numbers.
IPPROTO_ICMP = 1
IPPROTO_IPIP = 4
IPPROTO_TCP = 6
IPPROTO_UDP = 17
IPPROTO_IPV6 = 41
IPPROTO_GRE = 47
IPPROTO_ESP = 50
IPPROTO_AH = 51
IPPROTO_ICMPV6 = 58
IPV6_EXT_GENERIC = frozenset((0, 43, 60))  # hop-by-hop, routing, destination options
IPV6_EXT_FRAGMENT = 44

# UDP ports that carry overlays (kube-proxy.md §6): VXLAN IANA and Linux default, Geneve.
VXLAN_PORTS = frozenset((4789, 8472))
GENEVE_PORT = 6081
TUNNEL_PORTS = VXLAN_PORTS | {GENEVE_PORT}
# Encrypted tunnels, never decoded: WireGuard (wg-quick's default port; Cilium's transparent
# encryption) and ESP in UDP (RFC 3948, NAT traversal).
WIREGUARD_PORTS = (51820, 51871)
IPSEC_NAT_T_PORT = 4500

# An IPv4 total length above any jumbo MTU can only be an offload super-segment.
SUPER_LEN = 9000
# Nested tunnels deeper than this are not decapsulated further (bounds work on hostile input).
MAX_DEPTH = 8
MAX_MPLS_LABELS = 16
MAX_IPV6_EXT = 8

PROTO_NAMES = {
    IPPROTO_ICMP: "icmp",
    IPPROTO_TCP: "tcp",
    IPPROTO_UDP: "udp",
    IPPROTO_GRE: "gre",
    IPPROTO_ICMPV6: "icmpv6",
    50: "esp",
    132: "sctp",
}

_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_U32LE = struct.Struct("<I")
_TCP_FIXED = struct.Struct(">HHIIBB")
_IPV4_FIXED = struct.Struct(">BxHHHBB2x4s4s")


class Row:
    """The decoded fields of one frame; `src`/`dst` hold raw address bytes until interning."""

    __slots__ = (
        "iface",
        "direction",
        "encap",
        "family",
        "proto",
        "src",
        "dst",
        "sport",
        "dport",
        "ip_id",
        "ttl",
        "seq",
        "ack",
        "tcp_flags",
        "payload_len",
        "tsval",
        "tsecr",
        "mss",
        "opts",
        "phash",
        "pcap_len",
        "icmp_type",
        "icmp_code",
        "icmp_id",
        "icmp_seq",
        "payload_off",
        "quoted_proto",
        "quoted_sport",
        "quoted_dport",
        "quoted_seq",
    )

    def __init__(self, iface: int = -1, direction: int = DIR_UNKNOWN) -> None:
        self.iface = iface
        self.direction = direction
        self.encap: list[str] = []
        self.family = 0
        self.proto = 0
        self.src = b""
        self.dst = b""
        self.ip_id = -1
        self.ttl = -1
        self.opts = 0
        self._reset_l4()

    def _reset_l4(self) -> None:
        self.sport = -1
        self.dport = -1
        self.seq = 0
        self.ack = 0
        self.tcp_flags = 0
        self.payload_len = 0
        self.tsval = 0
        self.tsecr = 0
        self.mss = 0
        self.phash = 0
        self.pcap_len = 0
        self.icmp_type = -1
        self.icmp_code = -1
        self.icmp_id = -1
        self.icmp_seq = -1
        self.payload_off = -1
        self.quoted_proto = -1
        self.quoted_sport = -1
        self.quoted_dport = -1
        self.quoted_seq = -1

    def set_ip(self, family: int, proto: int, src: bytes, dst: bytes, ip_id: int, ttl: int) -> None:
        """Make this IP header the frame's innermost one: what an outer layer set is dropped."""
        self.family = family
        self.proto = proto
        self.src = src
        self.dst = dst
        self.ip_id = ip_id
        self.ttl = ttl
        self.opts &= OPT_TRUNCATED
        self._reset_l4()


def decode_frame(
    buf: Buffer,
    start: int,
    caplen: int,
    linktype: int,
    iface: int = -1,
    direction: int = DIR_UNKNOWN,
) -> Row:
    """Decode the frame at buf[start:start+caplen] captured with `linktype`."""
    row = Row(iface, direction)
    end = start + caplen
    try:
        _link(buf, start, end, linktype, row)
    except (struct.error, IndexError):
        # Every read is bounds-checked against `end`; this only guards a frame that sits at the
        # very end of a damaged file, where the buffer itself is shorter than the record claims.
        row.opts |= OPT_TRUNCATED
    return row


def _be16(buf: Buffer, pos: int) -> int:
    return int(_U16.unpack_from(buf, pos)[0])


def _be32(buf: Buffer, pos: int) -> int:
    return int(_U32.unpack_from(buf, pos)[0])


def _byte(buf: Buffer, pos: int) -> int:
    return buf[pos]


def _bytes(buf: Buffer, start: int, stop: int) -> bytes:
    return bytes(buf[start:stop])


def _truncated(row: Row) -> None:
    row.opts |= OPT_TRUNCATED


def _link(buf: Buffer, pos: int, end: int, linktype: int, row: Row) -> None:
    if linktype == LINKTYPE_ETHERNET:
        _ethernet(buf, pos, end, row, 0)
    elif linktype == LINKTYPE_LINUX_SLL2:
        row.encap.append("sll2")
        if pos + 20 > end:
            return _truncated(row)
        ifindex = _be32(buf, pos + 4)
        row.iface = ifindex if ifindex <= 0x7FFFFFFF else -1
        row.direction = _sll_direction(_byte(buf, pos + 10), row.direction)
        _ethertype(buf, pos + 20, end, _be16(buf, pos), row, 0)
    elif linktype == LINKTYPE_LINUX_SLL:
        row.encap.append("sll")
        if pos + 16 > end:
            return _truncated(row)
        row.direction = _sll_direction(_be16(buf, pos), row.direction)
        _ethertype(buf, pos + 16, end, _be16(buf, pos + 14), row, 0)
    elif linktype == LINKTYPE_RAW or linktype in LINKTYPE_RAW_LEGACY:
        _raw_ip(buf, pos, end, row, 0)
    elif linktype == LINKTYPE_IPV4:
        _ipv4(buf, pos, end, row, 0)
    elif linktype == LINKTYPE_IPV6:
        _ipv6(buf, pos, end, row, 0)
    elif linktype in (LINKTYPE_NULL, LINKTYPE_LOOP):
        row.encap.append("null" if linktype == LINKTYPE_NULL else "loop")
        if pos + 4 > end:
            return _truncated(row)
        if linktype == LINKTYPE_LOOP:
            family = _be32(buf, pos)
        else:
            # DLT_NULL stores the AF in the writer's byte order; AF values are small, so a
            # value with only high bits set was written big-endian.
            family = int(_U32LE.unpack_from(buf, pos)[0])
            if family > 0xFFFF:
                family = _be32(buf, pos)
        if family == 2:
            _ipv4(buf, pos + 4, end, row, 0)
        elif family in (24, 28, 30):  # AF_INET6 on NetBSD/OpenBSD, FreeBSD, macOS
            _ipv6(buf, pos + 4, end, row, 0)
        else:
            row.encap.append(f"af{family}")
    else:
        row.encap.append(f"dlt{linktype}")


def _sll_direction(pkttype: int, current: int) -> int:
    if pkttype == 4:  # PACKET_OUTGOING
        return DIR_OUT
    if pkttype <= 3:  # PACKET_HOST, _BROADCAST, _MULTICAST, _OTHERHOST
        return DIR_IN
    return current


def _ethernet(buf: Buffer, pos: int, end: int, row: Row, depth: int) -> None:
    row.encap.append("eth")
    if pos + 14 > end:
        return _truncated(row)
    _ethertype(buf, pos + 14, end, _be16(buf, pos + 12), row, depth)


def _ethertype(buf: Buffer, pos: int, end: int, etype: int, row: Row, depth: int) -> None:
    tags = 0
    while etype in VLAN_TPIDS:
        row.encap.append("vlan")
        tags += 1
        if pos + 4 > end or tags > MAX_MPLS_LABELS:
            return _truncated(row)
        etype = _be16(buf, pos + 2)
        pos += 4
    if etype == ETH_P_IP:
        _ipv4(buf, pos, end, row, depth)
    elif etype == ETH_P_IPV6:
        _ipv6(buf, pos, end, row, depth)
    elif etype in (ETH_P_MPLS_UC, ETH_P_MPLS_MC):
        _mpls(buf, pos, end, row, depth)
    elif etype == ETH_P_ARP:
        row.encap.append("arp")
    elif etype < 0x0600:  # an 802.3 length field: LLC/SNAP follows
        row.encap.append("llc")
    else:
        row.encap.append(f"0x{etype:04x}")


def _raw_ip(buf: Buffer, pos: int, end: int, row: Row, depth: int) -> None:
    if pos >= end:
        row.encap.append("raw")
        return _truncated(row)
    version = _byte(buf, pos) >> 4
    if version == 4:
        _ipv4(buf, pos, end, row, depth)
    elif version == 6:
        _ipv6(buf, pos, end, row, depth)
    else:
        row.encap.append("raw")


def _ipv4(buf: Buffer, pos: int, end: int, row: Row, depth: int) -> None:
    row.encap.append("ipv4")
    if pos + 20 > end:
        return _truncated(row)
    vihl, total, ip_id, frag, ttl, proto, src, dst = _IPV4_FIXED.unpack_from(buf, pos)
    ihl = (vihl & 0x0F) * 4
    if vihl >> 4 != 4 or ihl < 20:
        return  # not an IPv4 header after all: leave the frame as a non-IP one
    row.set_ip(4, proto, src, dst, ip_id, ttl)
    if total == 0:
        # Captured before TSO/GSO: the stack leaves the length to the NIC.
        row.opts |= OPT_SUPER
        total = end - pos
    elif total > SUPER_LEN:
        row.opts |= OPT_SUPER
    if pos + ihl > end:
        return _truncated(row)
    l4len = max(total - ihl, 0)
    if frag & 0x3FFF:
        row.opts |= OPT_FRAGMENT
        if frag & 0x1FFF:  # not the first fragment: no transport header here
            row.encap.append("frag")
            return _payload(buf, pos + ihl, end, l4len, row)
    _transport(buf, pos + ihl, end, proto, l4len, row, depth)


def _ipv6(buf: Buffer, pos: int, end: int, row: Row, depth: int) -> None:
    row.encap.append("ipv6")
    if pos + 40 > end:
        return _truncated(row)
    if _byte(buf, pos) >> 4 != 6:
        return
    plen = _be16(buf, pos + 4)
    nh = _byte(buf, pos + 6)
    row.set_ip(
        6,
        nh,
        _bytes(buf, pos + 8, pos + 24),
        _bytes(buf, pos + 24, pos + 40),
        -1,
        _byte(buf, pos + 7),
    )
    if plen == 0:
        # Jumbogram (hop-by-hop jumbo option) or captured before GSO.
        row.opts |= OPT_SUPER
        plen = end - pos - 40
    elif plen + 40 > SUPER_LEN:
        row.opts |= OPT_SUPER
    p = pos + 40
    for _ in range(MAX_IPV6_EXT):
        if nh in IPV6_EXT_GENERIC or nh == IPPROTO_AH:
            if p + 2 > end:
                return _truncated(row)
            length = (
                (_byte(buf, p + 1) + 2) * 4 if nh == IPPROTO_AH else (_byte(buf, p + 1) + 1) * 8
            )
        elif nh == IPV6_EXT_FRAGMENT:
            if p + 8 > end:
                return _truncated(row)
            length = 8
            frag = _be16(buf, p + 2)
            if frag & 0xFFF9:
                row.opts |= OPT_FRAGMENT
            if frag & 0xFFF8:  # a non-zero offset: not the first fragment
                row.proto = _byte(buf, p)
                row.encap.append("frag")
                return _payload(buf, p + 8, end, max(plen - 8, 0), row)
        else:
            break
        nh = _byte(buf, p)
        row.proto = nh
        p += length
        plen -= length
    if p > end:
        return _truncated(row)
    _transport(buf, p, end, nh, max(plen, 0), row, depth)


def _transport(
    buf: Buffer, pos: int, end: int, proto: int, l4len: int, row: Row, depth: int
) -> None:
    if proto == IPPROTO_TCP:
        _tcp(buf, pos, end, l4len, row)
    elif proto == IPPROTO_UDP:
        _udp(buf, pos, end, l4len, row, depth)
    elif proto in (IPPROTO_ICMP, IPPROTO_ICMPV6):
        _icmp(buf, pos, end, l4len, proto, row)
    elif proto == IPPROTO_IPIP and depth < MAX_DEPTH:
        _ipv4(buf, pos, end, row, depth + 1)
    elif proto == IPPROTO_IPV6 and depth < MAX_DEPTH:
        _ipv6(buf, pos, end, row, depth + 1)
    elif proto == IPPROTO_GRE:
        _gre(buf, pos, end, l4len, row, depth)
    else:
        row.encap.append(PROTO_NAMES.get(proto, f"ip{proto}"))
        _payload(buf, pos, end, l4len, row)


def _payload(buf: Buffer, pos: int, end: int, length: int, row: Row) -> None:
    row.payload_off = pos
    row.payload_len = length
    present = max(0, min(length, end - pos))
    row.pcap_len = present
    row.phash = payload_hash(_bytes(buf, pos, pos + min(present, PHASH_BYTES))) if present else 0


def _tcp(buf: Buffer, pos: int, end: int, l4len: int, row: Row) -> None:
    row.encap.append("tcp")
    if pos + 4 > end:
        return _truncated(row)
    if pos + 20 > end:
        row.sport, row.dport = _be16(buf, pos), _be16(buf, pos + 2)
        return _truncated(row)
    sport, dport, seq, ack, offx, flags = _TCP_FIXED.unpack_from(buf, pos)
    row.sport, row.dport, row.seq, row.ack, row.tcp_flags = sport, dport, seq, ack, flags
    hlen = (offx >> 4) * 4
    if hlen < 20:
        return _truncated(row)
    _tcp_options(buf, pos + 20, min(pos + hlen, end), row)
    if pos + hlen > end:
        row.payload_len = max(l4len - hlen, 0)
        return _truncated(row)
    _payload(buf, pos + hlen, end, max(l4len - hlen, 0), row)


def _tcp_options(buf: Buffer, pos: int, stop: int, row: Row) -> None:
    while pos < stop:
        kind = _byte(buf, pos)
        if kind == 0:  # end of option list
            return
        if kind == 1:  # NOP
            pos += 1
            continue
        if pos + 2 > stop:
            return
        length = _byte(buf, pos + 1)
        if length < 2 or pos + length > stop:
            return  # malformed or cut: the options before it still count
        if kind == 2 and length == 4:
            row.mss = _be16(buf, pos + 2)
            row.opts |= OPT_MSS
        elif kind == 8 and length == 10:
            row.tsval = _be32(buf, pos + 2)
            row.tsecr = _be32(buf, pos + 6)
            row.opts |= OPT_TS
        pos += length


def _udp(buf: Buffer, pos: int, end: int, l4len: int, row: Row, depth: int) -> None:
    row.encap.append("udp")
    if pos + 8 > end:
        if pos + 4 <= end:
            row.sport, row.dport = _be16(buf, pos), _be16(buf, pos + 2)
        return _truncated(row)
    row.sport = _be16(buf, pos)
    row.dport = dport = _be16(buf, pos + 2)
    # The length comes from the IP header, like TCP's: a GSO UDP header's own length is stale.
    _payload(buf, pos + 8, end, max(l4len - 8, 0), row)
    if depth >= MAX_DEPTH:
        return
    p = pos + 8
    if dport in VXLAN_PORTS:
        if p + 8 > end or not _byte(buf, p) & 0x08:  # the I flag: a valid VNI follows
            return
        row.encap.append("vxlan")
        _ethernet(buf, p + 8, end, row, depth + 1)
    elif dport == GENEVE_PORT:
        if p + 8 > end or _byte(buf, p) >> 6 != 0:  # version 0 only
            return
        inner = p + 8 + (_byte(buf, p) & 0x3F) * 4
        ptype = _be16(buf, p + 2)
        row.encap.append("geneve")
        if inner > end:
            return _truncated(row)
        _tunnel_payload(buf, inner, end, ptype, row, depth + 1)


def _tunnel_payload(buf: Buffer, pos: int, end: int, ptype: int, row: Row, depth: int) -> None:
    if ptype == ETH_P_TEB:
        _ethernet(buf, pos, end, row, depth)
    elif ptype == ETH_P_IP:
        _ipv4(buf, pos, end, row, depth)
    elif ptype == ETH_P_IPV6:
        _ipv6(buf, pos, end, row, depth)
    elif ptype in (ETH_P_MPLS_UC, ETH_P_MPLS_MC):
        _mpls(buf, pos, end, row, depth)


def _gre(buf: Buffer, pos: int, end: int, l4len: int, row: Row, depth: int) -> None:
    row.encap.append("gre")
    if pos + 4 > end:
        return _truncated(row)
    flags = _be16(buf, pos)
    ptype = _be16(buf, pos + 2)
    if flags & 0x4007:  # routing present (RFC 1701) or version != 0 (PPTP): not decapsulated
        return
    hlen = 4 + 4 * (bool(flags & 0x8000) + bool(flags & 0x2000) + bool(flags & 0x1000))
    if pos + hlen > end:
        return _truncated(row)
    _payload(buf, pos + hlen, end, max(l4len - hlen, 0), row)
    if depth < MAX_DEPTH:
        _tunnel_payload(buf, pos + hlen, end, ptype, row, depth + 1)


def _mpls(buf: Buffer, pos: int, end: int, row: Row, depth: int) -> None:
    row.encap.append("mpls")
    for _ in range(MAX_MPLS_LABELS):
        if pos + 4 > end:
            return _truncated(row)
        bottom = _byte(buf, pos + 2) & 0x01
        pos += 4
        if bottom:
            break
    else:
        return
    if pos >= end:
        return _truncated(row)
    # MPLS does not say what it carries; IP is recognised by its version nibble.
    version = _byte(buf, pos) >> 4
    if version == 4:
        _ipv4(buf, pos, end, row, depth)
    elif version == 6:
        _ipv6(buf, pos, end, row, depth)


# Echo request/reply types for ICMP (RFC 792) and ICMPv6 (RFC 4443): they carry id and sequence.
_ECHO_TYPES = {IPPROTO_ICMP: (0, 8), IPPROTO_ICMPV6: (128, 129)}
# Error types, which quote the offending packet: destination unreachable, source quench,
# redirect, time exceeded, parameter problem (ICMP); unreachable, packet too big, time
# exceeded, parameter problem (ICMPv6).
ICMP_ERROR_TYPES = {IPPROTO_ICMP: (3, 4, 5, 11, 12), IPPROTO_ICMPV6: (1, 2, 3, 4)}


def _icmp(buf: Buffer, pos: int, end: int, l4len: int, proto: int, row: Row) -> None:
    row.encap.append("icmp" if proto == IPPROTO_ICMP else "icmpv6")
    if pos + 2 > end:
        return _truncated(row)
    row.icmp_type = icmp_type = _byte(buf, pos)
    row.icmp_code = _byte(buf, pos + 1)
    if pos + 8 > end:
        return _truncated(row)
    if icmp_type in _ECHO_TYPES[proto]:
        row.icmp_id = _be16(buf, pos + 4)
        row.icmp_seq = _be16(buf, pos + 6)
    elif icmp_type in ICMP_ERROR_TYPES[proto]:
        _quoted(buf, pos + 8, end, row)
    _payload(buf, pos + 8, end, max(l4len - 8, 0), row)


def quoted_fields(quote: bytes) -> tuple[int, int, int, int]:
    """(proto, sport, dport, seq) of the packet quoted by an ICMP error's body, -1 where absent."""
    row = Row()
    _quoted(quote, 0, len(quote), row)
    return row.quoted_proto, row.quoted_sport, row.quoted_dport, row.quoted_seq


def _quoted(buf: Buffer, pos: int, end: int, row: Row) -> None:
    """The protocol, ports and TCP seq of the packet an ICMP error quotes (what fits).

    Only the quoted IP header and the first 8 bytes of L4 are guaranteed (RFC 792); an IPv6
    quote with extension headers is not followed. A quote cut short leaves the rest -1.
    """
    if pos >= end:
        return
    version = _byte(buf, pos) >> 4
    if version == 4 and pos + 20 <= end:
        ihl = (_byte(buf, pos) & 0x0F) * 4
        if ihl < 20 or _be16(buf, pos + 6) & 0x1FFF:  # no L4 header in a later fragment
            return
        proto, l4 = _byte(buf, pos + 9), pos + ihl
    elif version == 6 and pos + 40 <= end:
        proto, l4 = _byte(buf, pos + 6), pos + 40
    else:
        return
    row.quoted_proto = proto
    if proto not in (IPPROTO_TCP, IPPROTO_UDP) or l4 + 4 > end:
        return
    row.quoted_sport, row.quoted_dport = _be16(buf, l4), _be16(buf, l4 + 2)
    if proto == IPPROTO_TCP and l4 + 8 <= end:
        row.quoted_seq = _be32(buf, l4 + 4)

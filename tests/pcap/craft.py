"""Byte-exact frame and capture-file builders for the reader's tests (struct only, no scapy).

Every header is written field by field from the RFC layouts so that a test states the values it
put in and checks that the reader gives them back.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

MAC_A = bytes.fromhex("020000000001")
MAC_B = bytes.fromhex("020000000002")


def ip4(text: str) -> bytes:
    return socket.inet_aton(text)


def ip6(text: str) -> bytes:
    return socket.inet_pton(socket.AF_INET6, text)


def eth(payload: bytes, ethertype: int = 0x0800, vlans: Sequence[tuple[int, int]] = ()) -> bytes:
    """Ethernet II; `vlans` is a list of (TPID, VID), outermost first."""
    tags = b""
    types = [tpid for tpid, _ in vlans] + [ethertype]
    for (_, vid), inner in zip(vlans, types[1:], strict=True):
        tags += struct.pack(">HH", vid, inner)
    return MAC_B + MAC_A + struct.pack(">H", types[0]) + tags + payload


def ipv4(
    payload: bytes,
    proto: int,
    src: str = "10.0.0.1",
    dst: str = "10.0.0.2",
    *,
    ip_id: int = 0x1234,
    ttl: int = 64,
    flags_frag: int = 0x4000,
    options: bytes = b"",
    total: int | None = None,
) -> bytes:
    ihl = 5 + len(options) // 4
    length = ihl * 4 + len(payload) if total is None else total
    head = struct.pack(
        ">BBHHHBBH4s4s", 0x40 | ihl, 0, length, ip_id, flags_frag, ttl, proto, 0, ip4(src), ip4(dst)
    )
    return head + options + payload


def ipv6(
    payload: bytes,
    nh: int,
    src: str = "fd00::1",
    dst: str = "fd00::2",
    *,
    hlim: int = 64,
    plen: int | None = None,
) -> bytes:
    length = len(payload) if plen is None else plen
    return struct.pack(">IHBB16s16s", 0x60000000, length, nh, hlim, ip6(src), ip6(dst)) + payload


def ext(nh: int, body_len8: int = 0) -> bytes:
    """A generic IPv6 extension header (hop-by-hop, routing, destination options)."""
    return struct.pack(">BB", nh, body_len8) + b"\x01\x04\x00\x00\x00\x00" + b"\0" * (8 * body_len8)


def frag6(nh: int, offset: int = 0, more: bool = False, ident: int = 7) -> bytes:
    return struct.pack(">BBHI", nh, 0, (offset << 3) | int(more), ident)


def ah(nh: int) -> bytes:
    # Payload length 4 -> (4 + 2) * 4 = 24 bytes: SPI, sequence and a 12-byte ICV.
    return struct.pack(">BBHII", nh, 4, 0, 0x100, 1) + b"\xaa" * 12


def tcp(
    payload: bytes = b"",
    sport: int = 40000,
    dport: int = 80,
    *,
    seq: int = 1000,
    ack: int = 0,
    flags: int = 0x18,
    options: bytes = b"",
) -> bytes:
    assert len(options) % 4 == 0
    doff = 5 + len(options) // 4
    return (
        struct.pack(">HHIIBBHHH", sport, dport, seq, ack, doff << 4, flags, 65535, 0, 0)
        + options
        + payload
    )


def opt_ts(tsval: int, tsecr: int) -> bytes:
    """Linux data-segment layout: NOP NOP TS."""
    return b"\x01\x01\x08\x0a" + struct.pack(">II", tsval, tsecr)


def opt_syn(mss: int, tsval: int, tsecr: int, wscale: int = 7) -> bytes:
    """Linux SYN layout: MSS, SACK-permitted, TS, NOP, window scale."""
    return (
        struct.pack(">BBH", 2, 4, mss)
        + b"\x04\x02"
        + b"\x08\x0a"
        + struct.pack(">II", tsval, tsecr)
        + b"\x01\x03\x03"
        + bytes([wscale])
    )


def udp(payload: bytes = b"", sport: int = 5353, dport: int = 53) -> bytes:
    return struct.pack(">HHHH", sport, dport, 8 + len(payload), 0) + payload


def icmp_echo(ident: int, seq: int, payload: bytes = b"", kind: int = 8) -> bytes:
    return struct.pack(">BBHHH", kind, 0, 0, ident, seq) + payload


def vxlan(inner: bytes, vni: int = 1) -> bytes:
    return struct.pack(">BBHI", 0x08, 0, 0, vni << 8) + inner


def geneve(inner: bytes, vni: int = 10, options: bytes = b"", ptype: int = 0x6558) -> bytes:
    assert len(options) % 4 == 0
    return struct.pack(">BBHI", len(options) // 4, 0, ptype, vni << 8) + options + inner


def gre(
    inner: bytes, ptype: int, *, csum: bool = False, key: int | None = None, seq: int | None = None
) -> bytes:
    flags = (
        (0x8000 if csum else 0)
        | (0x2000 if key is not None else 0)
        | (0x1000 if seq is not None else 0)
    )
    out = struct.pack(">HH", flags, ptype)
    if csum:
        out += b"\0\0\0\0"
    if key is not None:
        out += struct.pack(">I", key)
    if seq is not None:
        out += struct.pack(">I", seq)
    return out + inner


def mpls(inner: bytes, labels: Sequence[int]) -> bytes:
    out = b""
    for i, label in enumerate(labels):
        bottom = 1 if i == len(labels) - 1 else 0
        out += struct.pack(">I", (label << 12) | (bottom << 8) | 64)
    return out + inner


def sll(payload: bytes, pkttype: int, protocol: int = 0x0800) -> bytes:
    return struct.pack(">HHH8sH", pkttype, 1, 6, MAC_A + b"\0\0", protocol) + payload


def sll2(payload: bytes, ifindex: int, pkttype: int, protocol: int = 0x0800) -> bytes:
    return struct.pack(">HHIHBB8s", protocol, 0, ifindex, 1, pkttype, 6, MAC_A + b"\0\0") + payload


# --- capture files ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Rec:
    data: bytes
    t_ns: int = 1_700_000_000_123_456_000
    origlen: int | None = None


def pcap(
    records: Iterable[Rec | bytes],
    linktype: int = 1,
    *,
    nanos: bool = False,
    order: str = "<",
    snaplen: int = 262144,
) -> bytes:
    magic = 0xA1B23C4D if nanos else 0xA1B2C3D4
    out = [struct.pack(order + "IHHiIII", magic, 2, 4, 0, 0, snaplen, linktype)]
    for r in records:
        rec = r if isinstance(r, Rec) else Rec(r)
        sec, rest = divmod(rec.t_ns, 1_000_000_000)
        frac = rest if nanos else rest // 1000
        orig = len(rec.data) if rec.origlen is None else rec.origlen
        out.append(struct.pack(order + "IIII", sec, frac, len(rec.data), orig) + rec.data)
    return b"".join(out)


def _pad(b: bytes) -> bytes:
    return b + b"\0" * (-len(b) % 4)


def option(code: int, value: bytes, order: str = "<") -> bytes:
    return struct.pack(order + "HH", code, len(value)) + _pad(value)


def options(items: Sequence[tuple[int, bytes]], order: str = "<") -> bytes:
    if not items:
        return b""
    return b"".join(option(c, v, order) for c, v in items) + struct.pack(order + "HH", 0, 0)


def block(btype: int, body: bytes, order: str = "<") -> bytes:
    body = _pad(body)
    length = 12 + len(body)
    return struct.pack(order + "II", btype, length) + body + struct.pack(order + "I", length)


def shb(order: str = "<", opts: Sequence[tuple[int, bytes]] = ()) -> bytes:
    body = struct.pack(order + "IHHq", 0x1A2B3C4D, 1, 0, -1) + options(opts, order)
    return block(0x0A0D0D0A, body, order)


def idb(
    linktype: int,
    order: str = "<",
    snaplen: int = 0,
    *,
    name: str | None = None,
    tsresol: int | None = None,
    tsoffset: int | None = None,
) -> bytes:
    opts: list[tuple[int, bytes]] = []
    if name is not None:
        opts.append((2, name.encode()))
    if tsresol is not None:
        opts.append((9, bytes([tsresol])))
    if tsoffset is not None:
        opts.append((14, struct.pack(order + "q", tsoffset)))
    return block(1, struct.pack(order + "HHI", linktype, 0, snaplen) + options(opts, order), order)


def epb(
    data: bytes,
    iface: int,
    ticks: int,
    order: str = "<",
    *,
    comment: str | None = None,
    flags: int | None = None,
    origlen: int | None = None,
) -> bytes:
    opts: list[tuple[int, bytes]] = []
    if comment is not None:
        opts.append((1, comment.encode()))
    if flags is not None:
        opts.append((2, struct.pack(order + "I", flags)))
    orig = len(data) if origlen is None else origlen
    body = struct.pack(
        order + "IIIII", iface, ticks >> 32, ticks & 0xFFFFFFFF, len(data), orig
    ) + _pad(data)
    return block(6, body + options(opts, order), order)


def pb(data: bytes, iface: int, ticks: int, order: str = "<") -> bytes:
    """The obsolete Packet Block (type 2): 16-bit interface id and 16-bit drop count."""
    body = struct.pack(
        order + "HHIIII", iface, 0, ticks >> 32, ticks & 0xFFFFFFFF, len(data), len(data)
    ) + _pad(data)
    return block(2, body, order)


def spb(data: bytes, order: str = "<", origlen: int | None = None) -> bytes:
    return block(
        3, struct.pack(order + "I", len(data) if origlen is None else origlen) + _pad(data), order
    )

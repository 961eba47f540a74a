"""Packet specs and their wire bytes: Ethernet/SLL2 frames, VXLAN, and pcap/pcapng writers.

Packets are described by small frozen specs (`Pkt`, `Vxlan`, `Sighting`) and encoded with
`struct` only (no scapy: the benchmark writes millions of frames). Checksums are real so the
files open cleanly in Wireshark. This module writes files only where the caller asks and never
sends anything on a network.
"""

from __future__ import annotations

import ipaddress
import struct
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from tracer.pcap.columns import DIR_IN, DIR_OUT, DIR_UNKNOWN

# Link types (https://www.tcpdump.org/linktypes.html).
ETHERNET = 1
RAW = 101
LINUX_SLL2 = 276

ETH_P_IP = 0x0800
ETH_P_IPV6 = 0x86DD
IPPROTO = {"icmp": 1, "tcp": 6, "udp": 17, "icmpv6": 58}
IP_DF = 0x4000
VXLAN_FLAG_I = 0x08  # RFC 7348: the VNI is valid
FLANNEL_VXLAN_PORT = 8472  # the Linux kernel default flannel uses (IANA's is 4789)

_CLIENT_MAC = bytes.fromhex("0a580af40107")
_PEER_MAC = bytes.fromhex("0a580af401ff")


@dataclass(frozen=True)
class Pkt:
    """One IP packet as a sender built it: the fields that matter for matching, nothing else.

    `proto` is "tcp", "udp", "icmp" or "icmpv6"; the family follows the addresses. `ip_id` is
    ignored for IPv6 (no ID field). `tsval`/`tsecr` add the TCP timestamps option (RFC 7323).
    """

    proto: str
    src: str
    dst: str
    sport: int | None = None
    dport: int | None = None
    seq: int = 0
    ack: int = 0
    flags: int = 0
    payload: bytes = b""
    ip_id: int = 0
    ttl: int = 64
    tsval: int | None = None
    tsecr: int | None = None
    mss: int | None = None
    window: int = 64240
    icmp_type: int | None = None
    icmp_code: int = 0
    icmp_id: int | None = None
    icmp_seq: int | None = None

    @property
    def family(self) -> int:
        return 6 if ":" in self.src else 4


@dataclass(frozen=True)
class Vxlan:
    """The outer headers flannel adds on eth0 (VXLAN over UDP 8472, VNI 1)."""

    src: str
    dst: str
    sport: int
    dport: int = FLANNEL_VXLAN_PORT
    vni: int = 1
    ip_id: int = 0
    ttl: int = 64


@dataclass(frozen=True)
class Sighting:
    """One frame of one capture: a packet as one point saw it, stamped by that point's clock.

    `packet` is the ground-truth identity: sightings with the same id are the same packet.
    """

    t_ns: int
    pkt: Pkt
    iface: str | None = None
    direction: int = DIR_UNKNOWN
    vxlan: Vxlan | None = None
    packet: int = -1


def _checksum(data: bytes) -> int:
    """RFC 1071 Internet checksum of `data`, as the value to pack big-endian."""
    if len(data) % 2:
        data += b"\0"
    s = sum(memoryview(data).cast("H"))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    s = ~s & 0xFFFF
    if sys.byteorder == "little":
        s = ((s >> 8) | (s << 8)) & 0xFFFF
    return s


def _addr(text: str) -> bytes:
    return ipaddress.ip_address(text).packed


def _tcp_options(pkt: Pkt) -> bytes:
    opts = b""
    if pkt.mss is not None:
        opts += struct.pack("!BBH", 2, 4, pkt.mss)
    if pkt.tsval is not None:
        opts += struct.pack("!BBBBII", 1, 1, 8, 10, pkt.tsval, pkt.tsecr or 0)
    return opts + b"\0" * (-len(opts) % 4)


def l4_bytes(pkt: Pkt, src: bytes, dst: bytes) -> bytes:
    """The transport header and payload with a valid checksum.

    The pseudo-header is packed as src, dst, protocol, length in 16-bit words: the one's
    complement sum is the same as RFC 793's IPv4 and RFC 8200's IPv6 layouts.
    """
    proto = IPPROTO[pkt.proto]
    if pkt.proto == "tcp":
        opts = _tcp_options(pkt)
        doff = (20 + len(opts)) // 4
        seg = struct.pack(
            "!HHIIHHHH",
            pkt.sport or 0,
            pkt.dport or 0,
            pkt.seq & 0xFFFFFFFF,
            pkt.ack & 0xFFFFFFFF,
            (doff << 12) | pkt.flags,
            pkt.window,
            0,
            0,
        )
        seg += opts + pkt.payload
        off = 16
    elif pkt.proto == "udp":
        seg = struct.pack("!HHHH", pkt.sport or 0, pkt.dport or 0, 8 + len(pkt.payload), 0)
        seg += pkt.payload
        off = 6
    elif pkt.proto in ("icmp", "icmpv6"):
        default_type = 8 if pkt.proto == "icmp" else 128
        seg = struct.pack(
            "!BBHHH",
            default_type if pkt.icmp_type is None else pkt.icmp_type,
            pkt.icmp_code,
            0,
            pkt.icmp_id or 0,
            pkt.icmp_seq or 0,
        )
        seg += pkt.payload
        off = 2
    else:
        raise ValueError(f"unknown protocol {pkt.proto!r}")
    # ICMPv4 has no pseudo-header; TCP, UDP and ICMPv6 (RFC 4443 section 2.3) do.
    pseudo = b"" if pkt.proto == "icmp" else src + dst + struct.pack("!HH", proto, len(seg))
    csum = _checksum(pseudo + seg)
    if pkt.proto == "udp" and csum == 0:
        csum = 0xFFFF  # RFC 768: a computed zero is sent as all ones
    return seg[:off] + struct.pack("!H", csum) + seg[off + 2 :]


def ip_bytes(pkt: Pkt) -> bytes:
    """The whole IP packet (IPv4 with DF set, or IPv6) with valid checksums."""
    src, dst = _addr(pkt.src), _addr(pkt.dst)
    proto = IPPROTO[pkt.proto]
    seg = l4_bytes(pkt, src, dst)
    if pkt.family == 4:
        hdr = struct.pack(
            "!BBHHHBBH4s4s",
            0x45,
            0,
            20 + len(seg),
            pkt.ip_id & 0xFFFF,
            IP_DF,
            pkt.ttl,
            proto,
            0,
            src,
            dst,
        )
        return hdr[:10] + struct.pack("!H", _checksum(hdr)) + hdr[12:] + seg
    return struct.pack("!IHBB16s16s", 0x60000000, len(seg), proto, pkt.ttl, src, dst) + seg


def ethernet(payload: bytes, ethertype: int, src_mac: bytes = _CLIENT_MAC) -> bytes:
    return _PEER_MAC + src_mac + struct.pack("!H", ethertype) + payload


def vxlan_bytes(outer: Vxlan, inner_frame: bytes) -> bytes:
    """Outer IPv4 + UDP + VXLAN around an inner Ethernet frame (RFC 7348)."""
    vx = struct.pack("!BxxxI", VXLAN_FLAG_I, outer.vni << 8) + inner_frame
    src, dst = _addr(outer.src), _addr(outer.dst)
    udp = l4_bytes(Pkt("udp", outer.src, outer.dst, outer.sport, outer.dport, payload=vx), src, dst)
    hdr = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), outer.ip_id, 0, outer.ttl, 17, 0, src, dst
    )
    return hdr[:10] + struct.pack("!H", _checksum(hdr)) + hdr[12:] + udp


def frame_bytes(s: Sighting, linktype: int = ETHERNET, ifindex: int = 0) -> bytes:
    """The captured frame of a sighting: Ethernet, raw IP or SLL2, VXLAN-wrapped if it says so."""
    ip = ip_bytes(s.pkt)
    ethertype = ETH_P_IP if s.pkt.family == 4 else ETH_P_IPV6
    if s.vxlan is not None:
        ip = vxlan_bytes(s.vxlan, ethernet(ip, ethertype))
        ethertype = ETH_P_IP
    if linktype == ETHERNET:
        return ethernet(ip, ethertype)
    if linktype == RAW:
        return ip
    if linktype == LINUX_SLL2:
        pkttype = 4 if s.direction == DIR_OUT else 0  # PACKET_OUTGOING / PACKET_HOST
        hdr = struct.pack("!HHIHBB8s", ethertype, 0, ifindex, 1, pkttype, 6, _CLIENT_MAC)
        return hdr + ip
    raise ValueError(f"unsupported link type {linktype}")


def interface_ids(sightings: Iterable[Sighting], start: int = 0) -> dict[str, int]:
    """Interface name -> id in order of first appearance (None becomes "any")."""
    ids: dict[str, int] = {}
    for s in sightings:
        name = s.iface or "any"
        if name not in ids:
            ids[name] = len(ids) + start
    return ids


def write_pcap(
    path: str | Path,
    sightings: Sequence[Sighting],
    linktype: int = ETHERNET,
    nanosecond: bool = True,
    ifindex: Mapping[str, int] | None = None,
) -> dict[str, int]:
    """Write a libpcap file; returns the SLL2 ifindex of each interface name (1-based)."""
    index = dict(ifindex) if ifindex is not None else interface_ids(sightings, start=1)
    magic = 0xA1B23C4D if nanosecond else 0xA1B2C3D4
    out = [struct.pack("<IHHiIII", magic, 2, 4, 0, 0, 262144, linktype)]
    for s in sightings:
        frame = frame_bytes(s, linktype, index.get(s.iface or "any", 0))
        sec, frac = divmod(s.t_ns, 1_000_000_000)
        if not nanosecond:
            frac //= 1_000
        out.append(struct.pack("<IIII", sec, frac, len(frame), len(frame)))
        out.append(frame)
    Path(path).write_bytes(b"".join(out))
    return index


def _option(code: int, value: bytes) -> bytes:
    return struct.pack("<HH", code, len(value)) + value + b"\0" * (-len(value) % 4)


def _block(btype: int, body: bytes) -> bytes:
    length = 12 + len(body)
    return struct.pack("<II", btype, length) + body + struct.pack("<I", length)


def write_pcapng(
    path: str | Path,
    sightings: Sequence[Sighting],
    linktype: int = ETHERNET,
    comments: Mapping[int, str] | None = None,
) -> dict[str, int]:
    """Write a pcapng file with one IDB per interface name and epb_flags for the direction.

    Timestamps use if_tsresol 9 (nanoseconds). Returns interface name -> interface id.
    """
    ids = interface_ids(sightings)
    shb = struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1)
    out = [_block(0x0A0D0D0A, shb)]
    for name in ids:
        opts = _option(2, name.encode()) + _option(9, bytes((9,))) + _option(0, b"")
        out.append(_block(1, struct.pack("<HHI", linktype, 0, 262144) + opts))
    notes = comments or {}
    for i, s in enumerate(sightings):
        iid = ids[s.iface or "any"]
        frame = frame_bytes(s, linktype, iid + 1)
        flags = {DIR_IN: 1, DIR_OUT: 2}.get(s.direction, 0)
        opts = b""
        if flags:
            opts += _option(2, struct.pack("<I", flags))
        if i in notes:
            opts += _option(1, notes[i].encode())
        if opts:
            opts += _option(0, b"")
        ts = s.t_ns
        body = struct.pack("<IIIII", iid, ts >> 32, ts & 0xFFFFFFFF, len(frame), len(frame))
        body += frame + b"\0" * (-len(frame) % 4) + opts
        out.append(_block(6, body))
    Path(path).write_bytes(b"".join(out))
    return ids


def _be16_sum(block: npt.NDArray[np.uint8]) -> npt.NDArray[np.int64]:
    """Sum of big-endian 16-bit words of each row (rows padded to even length)."""
    if block.shape[1] % 2:
        block = np.pad(block, ((0, 0), (0, 1)))
    words = block.reshape(block.shape[0], -1, 2).astype(np.int64)
    return (words[:, :, 0] * 256 + words[:, :, 1]).sum(axis=1)


def _fold(s: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    s = (s & 0xFFFF) + (s >> 16)
    s = (s & 0xFFFF) + (s >> 16)
    return (~s) & 0xFFFF


def _put(block: npt.NDArray[np.uint8], off: int, values: npt.NDArray[np.int64], size: int) -> None:
    for i in range(size):
        block[:, off + i] = (values >> (8 * (size - 1 - i))) & 0xFF


def write_bulk_pcap(
    path: str | Path,
    templates: Sequence[Sighting],
    columns: Mapping[str, npt.NDArray[np.generic]],
    template_row: npt.NDArray[np.int64],
    addresses: Sequence[str],
    *,
    linktype: int = ETHERNET,
    ifindex: Mapping[str, int] | None = None,
) -> int:
    """Write a nanosecond pcap of many TCP frames (IPv4 or IPv6) patched from template frames.

    Row i of `columns` (a `Frames`-style column dict, in file order) is template
    `template_row[i]` with its t_ns, addresses, ports, seq/ack, IP ID (IPv4) and TSval/TSecr
    replaced; IPv4 and TCP checksums are recomputed. Vectorised per template, for benchmarks with
    millions of frames. `linktype` is ETHERNET or LINUX_SLL2 (an `-i any` capture, whose frames
    carry `ifindex[template's interface]`, by default numbered in order of first appearance
    from 1). Returns the number of bytes written.
    """
    if linktype not in (ETHERNET, LINUX_SLL2):
        raise ValueError(
            f"write_bulk_pcap writes Ethernet or SLL2 frames, not link type {linktype}"
        )
    n = int(template_row.shape[0])
    index = dict(ifindex) if ifindex is not None else interface_ids(templates, start=1)
    raws = [frame_bytes(s, linktype, index.get(s.iface or "any", 0)) for s in templates]
    families = {s.pkt.family for s in templates}
    for s in templates:
        if s.pkt.proto != "tcp" or len(families) != 1 or s.vxlan is not None:
            raise ValueError("write_bulk_pcap handles plain TCP templates of one family only")
    v6 = families == {6}
    ip = 14 if linktype == ETHERNET else 20  # where the IP header starts
    l4 = ip + (40 if v6 else 20)
    src_at, alen = (ip + 8, 16) if v6 else (ip + 12, 4)
    lens = np.array([len(r) for r in raws], dtype=np.int64)
    rec_len = 16 + lens[template_row]
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(rec_len, out=offsets[1:])
    buf = np.zeros(24 + int(offsets[-1]), dtype=np.uint8)
    buf[:24] = np.frombuffer(
        struct.pack("<IHHiIII", 0xA1B23C4D, 2, 4, 0, 0, 262144, linktype), dtype=np.uint8
    )
    addr_bytes = np.array(
        [list(ipaddress.ip_address(a).packed) for a in addresses], dtype=np.uint8
    ).reshape(-1, alen)
    # Each address's 16-bit words summed: its share of the TCP pseudo-header checksum.
    addr_sum = (addr_bytes[:, 0::2].astype(np.int64) << 8 | addr_bytes[:, 1::2]).sum(axis=1)
    t = np.asarray(columns["t_ns"], dtype=np.int64)
    for r, raw in enumerate(raws):
        rows = np.flatnonzero(template_row == r)
        if rows.shape[0] == 0:
            continue
        m = rows.shape[0]
        length = int(lens[r])
        block = np.tile(np.frombuffer(raw, dtype=np.uint8), (m, 1))
        c = {k: np.asarray(columns[k])[rows].astype(np.int64) for k in columns}
        if not v6:
            _put(block, ip + 4, c["ip_id"], 2)
        block[:, src_at : src_at + alen] = addr_bytes[c["src"]]
        block[:, src_at + alen : src_at + 2 * alen] = addr_bytes[c["dst"]]
        _put(block, l4, c["sport"], 2)
        _put(block, l4 + 2, c["dport"], 2)
        _put(block, l4 + 4, c["seq"], 4)
        _put(block, l4 + 8, c["ack"], 4)
        pkt = templates[r].pkt
        if pkt.tsval is not None:
            ts_off = l4 + 20 + (4 if pkt.mss is not None else 0) + 4
            _put(block, ts_off, c["tsval"], 4)
            _put(block, ts_off + 4, c["tsecr"], 4)
        if not v6:
            block[:, ip + 10 : ip + 12] = 0
            _put(block, ip + 10, _fold(_be16_sum(block[:, ip:l4])), 2)
        block[:, l4 + 16 : l4 + 18] = 0
        seg_len = length - l4
        pseudo = addr_sum[c["src"]] + addr_sum[c["dst"]] + 6 + seg_len
        _put(block, l4 + 16, _fold(_be16_sum(block[:, l4:]) + pseudo), 2)
        head = np.zeros((m, 16), dtype=np.uint8)
        sec, frac = np.divmod(t[rows], 1_000_000_000)
        for j, v in enumerate((sec, frac, np.full(m, length), np.full(m, length))):
            head[:, 4 * j : 4 * j + 4] = v.astype("<u4").view(np.uint8).reshape(m, 4)
        rec = np.concatenate([head, block], axis=1)
        dest = 24 + offsets[rows][:, None] + np.arange(16 + length)[None, :]
        buf[dest] = rec
    Path(path).write_bytes(buf.tobytes())
    return int(buf.shape[0])

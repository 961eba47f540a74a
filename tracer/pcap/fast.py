"""Vectorised decoding of the common frame layouts, a whole group of frames per numpy pass.

Takes frames of one link type (Ethernet, SLL, SLL2, raw IPv4) and decodes those whose layout is
the everyday one: IPv4 without options or fragmentation, then TCP (any option list, walked for
all rows at once), UDP that is not an overlay port, or ICMP that is not an error. Every other frame is left to the reference decoder (`tracer.pcap.decode`),
whose values these must equal exactly. Pure: arrays in, arrays out; no Python loop per frame.

`native` is the compiled twin of this module (`_native.c`: the same decoding one frame at a time
in C, plus the pcap record walk and address interning), or None where it was not built; the
reader prefers it, and tests set it to None to check this numpy path.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType

import numpy as np
import numpy.typing as npt

from tracer import compiled
from tracer.pcap.columns import (
    COLUMNS,
    DIR_IN,
    DIR_OUT,
    OPT_MSS,
    OPT_TS,
    PHASH_BYTES,
    payload_hash_batch,
)
from tracer.pcap.decode import (
    ICMP_ERROR_TYPES,
    IPPROTO_ICMP,
    IPPROTO_TCP,
    IPPROTO_UDP,
    LINKTYPE_ETHERNET,
    LINKTYPE_IPV4,
    LINKTYPE_LINUX_SLL,
    LINKTYPE_LINUX_SLL2,
    LINKTYPE_RAW,
    LINKTYPE_RAW_LEGACY,
    SUPER_LEN,
    TUNNEL_PORTS,
)
from tracer.pcap.gather import window

native: ModuleType | None = compiled.load("tracer.pcap._native")

QUOTED_COLUMNS = tuple(col for col in COLUMNS if col[0].startswith("quoted_"))

# link type -> (encapsulation name or None, link header length, offset of the EtherType or None)
LAYOUTS: dict[int, tuple[str | None, int, int | None]] = {
    LINKTYPE_ETHERNET: ("eth", 14, 12),
    LINKTYPE_LINUX_SLL2: ("sll2", 20, 0),
    LINKTYPE_LINUX_SLL: ("sll", 16, 14),
    LINKTYPE_RAW: (None, 0, None),
    LINKTYPE_IPV4: (None, 0, None),
    **{lt: (None, 0, None) for lt in LINKTYPE_RAW_LEGACY},
}

I64 = npt.NDArray[np.int64]
U8 = npt.NDArray[np.uint8]


@dataclass(frozen=True)
class FastGroup:
    """The decoded subset of a group: `rows` are positions within the arrays passed in."""

    rows: I64
    columns: dict[str, npt.NDArray[np.generic]]
    src: npt.NDArray[np.uint32]  # IPv4 addresses as big-endian integers
    dst: npt.NDArray[np.uint32]
    encap: npt.NDArray[np.int8]  # index into `stacks`
    stacks: tuple[tuple[str, ...], ...]


def phash(rows: U8, start: I64, pcap_len: I64) -> npt.NDArray[np.uint32]:
    """The `phash` column for payloads starting at column `start` of each row of `rows`."""
    out = np.zeros(len(rows), dtype=np.uint32)
    has = np.flatnonzero(pcap_len > 0)
    if not len(has):
        return out
    block = np.empty((len(has), PHASH_BYTES), dtype=np.uint8)
    start = start[has]
    # Payloads start at only a few distinct columns (one per header layout): slice per column.
    for col in np.unique(start).tolist():
        sel = np.flatnonzero(start == col)
        block[sel] = rows[has[sel], col : col + PHASH_BYTES]
    length = pcap_len[has]
    short = np.flatnonzero(length < PHASH_BYTES)
    if len(short):
        block[short] *= np.arange(PHASH_BYTES) < length[short][:, None]
    out[has] = payload_hash_batch(block, length)
    return out


def _layout(lhl: int, etype_at: int | None, width: int) -> np.dtype[np.void]:
    """A structured view of one row: every field the fast path reads, at its fixed offset.

    Fields overlap where layouts differ (TCP options, ICMP) and are only read where they apply.
    Viewing rows through it reads each field straight from the row, without a copy per field.
    """
    ip, l4 = lhl, lhl + 20
    fields: dict[str, tuple[str, int]] = {
        "vihl": ("u1", ip),
        "total": (">u2", ip + 2),
        "ip_id": (">u2", ip + 4),
        "frag": (">u2", ip + 6),
        "ttl": ("u1", ip + 8),
        "proto": ("u1", ip + 9),
        "src": (">u4", ip + 12),
        "dst": (">u4", ip + 16),
        "sport": (">u2", l4),
        "dport": (">u2", l4 + 2),
        "seq": (">u4", l4 + 4),
        "ack": (">u4", l4 + 8),
        "doff": ("u1", l4 + 12),
        "flags": ("u1", l4 + 13),
        "icmp_type": ("u1", l4),
        "icmp_code": ("u1", l4 + 1),
        "echo_id": (">u2", l4 + 4),
        "echo_seq": (">u2", l4 + 6),
    }
    if etype_at is not None:
        fields["etype"] = (">u2", etype_at)
    if lhl == 20:  # SLL2
        fields["ifindex"] = (">u4", 4)
        fields["pkttype"] = ("u1", 10)
    elif lhl == 16:  # SLL
        fields["pkttype16"] = (">u2", 0)
    return np.dtype(
        {
            "names": list(fields),
            "formats": [f for f, _ in fields.values()],
            "offsets": [o for _, o in fields.values()],
            "itemsize": width,
        }
    )


def decode_group(
    data: U8, off: I64, caplen: I64, linktype: int, direction: npt.NDArray[np.int8]
) -> FastGroup:
    """Decode the frames at `off` (all of `linktype`) that have a common layout."""
    link, lhl, etype_at = LAYOUTS[linktype]
    ip = lhl
    l4 = ip + 20
    # Headers and the first payload bytes of every frame in one row: the payload starts at most
    # 60 bytes past the TCP header's start (the largest data offset).
    width = l4 + 60 + PHASH_BYTES
    hdr = window(data, off, width)
    f = hdr.view(_layout(lhl, etype_at, width))[:, 0]
    ok = (caplen >= l4 + 8) & (f["vihl"] == 0x45)  # version 4, no IP options
    if etype_at is not None:
        ok &= f["etype"] == 0x0800
    total = f["total"].astype(np.int64)
    ok &= ((f["frag"] & 0x3FFF) == 0) & (total >= 28) & (total <= SUPER_LEN)
    proto = f["proto"]
    thl = (f["doff"] >> 4).astype(np.int64) * 4
    is_tcp = (proto == IPPROTO_TCP) & (thl >= 20)
    is_tcp &= (caplen >= l4 + thl) & (total >= 20 + thl)
    is_udp = (proto == IPPROTO_UDP) & ~np.isin(f["dport"], list(TUNNEL_PORTS))
    # ICMP errors quote a packet: the reference decoder reads the quote (they are few).
    is_icmp = (proto == IPPROTO_ICMP) & ~np.isin(f["icmp_type"], ICMP_ERROR_TYPES[IPPROTO_ICMP])
    rows = np.flatnonzero(ok & (is_tcp | is_udp | is_icmp))

    everything = len(rows) == len(hdr)
    h = hdr if everything else hdr[rows]
    r = f if everything else f[rows]
    n = len(rows)
    tcp = is_tcp[rows]
    udp = is_udp[rows]
    icmp = is_icmp[rows]
    ports = tcp | udp
    total = total[rows]
    l4hl = np.where(tcp, thl[rows], 8)
    c: dict[str, npt.NDArray[np.generic]] = {}
    c["family"] = np.full(n, 4, np.uint8)
    c["proto"] = proto[rows]
    c["ip_id"] = r["ip_id"].astype(np.int32)
    c["ttl"] = r["ttl"].astype(np.int16)
    c["sport"] = np.where(ports, r["sport"].astype(np.int32), -1).astype(np.int32)
    c["dport"] = np.where(ports, r["dport"].astype(np.int32), -1).astype(np.int32)
    c["seq"] = np.where(tcp, r["seq"], 0).astype(np.uint32)
    c["ack"] = np.where(tcp, r["ack"], 0).astype(np.uint32)
    c["tcp_flags"] = np.where(tcp, r["flags"], 0).astype(np.uint8)
    opt_rows = np.flatnonzero(tcp & (l4hl > 20))
    c["tsval"], c["tsecr"], c["mss"], c["opts"] = tcp_options(
        h[opt_rows, l4 + 20 : l4 + 60], l4hl[opt_rows] - 20, opt_rows, n
    )
    icmp_type = r["icmp_type"].astype(np.int16)
    echo = icmp & ((icmp_type == 0) | (icmp_type == 8))
    c["icmp_type"] = np.where(icmp, icmp_type, -1).astype(np.int16)
    c["icmp_code"] = np.where(icmp, r["icmp_code"].astype(np.int16), -1).astype(np.int16)
    c["icmp_id"] = np.where(echo, r["echo_id"].astype(np.int32), -1).astype(np.int32)
    c["icmp_seq"] = np.where(echo, r["echo_seq"].astype(np.int32), -1).astype(np.int32)
    for name, dtype, sentinel in QUOTED_COLUMNS:
        c[name] = np.full(n, sentinel, dtype)  # errors are left to the reference decoder
    payload_len = total - 20 - l4hl
    payload_off = off[rows] + l4 + l4hl
    pcap_len = np.clip(caplen[rows] - (l4 + l4hl), 0, payload_len)
    c["payload_len"] = payload_len.astype(np.int32)
    c["payload_off"] = payload_off
    c["pcap_len"] = pcap_len.astype(np.int32)
    c["phash"] = phash(h, l4 + l4hl, pcap_len)
    if linktype == LINKTYPE_LINUX_SLL2:
        ifindex = r["ifindex"].astype(np.int64)
        c["iface"] = np.where(ifindex <= 0x7FFFFFFF, ifindex, -1).astype(np.int32)
        c["direction"] = _sll_direction(r["pkttype"].astype(np.int64), direction[rows])
    elif linktype == LINKTYPE_LINUX_SLL:
        c["direction"] = _sll_direction(r["pkttype16"].astype(np.int64), direction[rows])
    head = (link,) if link else ()
    stacks = (head + ("ipv4", "tcp"), head + ("ipv4", "udp"), head + ("ipv4", "icmp"))
    encap = np.where(tcp, 0, np.where(udp, 1, 2)).astype(np.int8)
    return FastGroup(rows, c, r["src"].astype(np.uint32), r["dst"].astype(np.uint32), encap, stacks)


# Distinct option layouts learned per group before the rest is walked option by option: a
# capture holds a handful (Linux: NOP NOP TS on data, MSS SACK-OK TS NOP WS on SYNs).
MAX_LAYOUTS = 8


def tcp_options(
    area: U8, stop: I64, where: I64, n: int
) -> tuple[
    npt.NDArray[np.uint32], npt.NDArray[np.uint32], npt.NDArray[np.uint16], npt.NDArray[np.uint8]
]:
    """tsval, tsecr, mss and opts for n rows, from the option bytes of the rows at `where`.

    `area` holds each of those rows' 40 option bytes, of which the first `stop` are options.
    The reference decoder's walk (NOP skips a byte, EOL or a malformed length ends it, a later
    option of the same kind wins) takes its branches on the kind and length bytes alone: every
    row with the same `stop` and the same bytes at those places gives the same walk. So the
    first unclaimed row is walked in Python, every row sharing its layout takes the values at
    the same offsets at once, and this repeats for a few layouts; rows left after that are
    walked all together, one option per pass.
    """
    tsval = np.zeros(n, np.uint32)
    tsecr = np.zeros(n, np.uint32)
    mss = np.zeros(n, np.uint16)
    opts = np.zeros(n, np.uint8)
    if not len(where):
        return tsval, tsecr, mss, opts
    stop = stop.astype(np.int64)
    left = np.arange(len(where))
    for _ in range(MAX_LAYOUTS):
        if not len(left):
            return tsval, tsecr, mss, opts
        first = int(left[0])
        lim = int(stop[first])
        checks, mss_at, ts_at = _walk_one(area[first].tolist(), lim)
        same = stop[left] == lim
        for at, value in checks:
            same &= area[left, at] == value
        rows = left[same]
        dest = where[rows]
        if mss_at is not None:
            mss[dest] = (area[rows, mss_at].astype(np.uint16) << 8) | area[rows, mss_at + 1]
            opts[dest] |= OPT_MSS
        if ts_at is not None:
            tsval[dest] = _be32(area, rows, ts_at)
            tsecr[dest] = _be32(area, rows, ts_at + 4)
            opts[dest] |= OPT_TS
        left = left[~same]
    if len(left):
        _walk_all(area, stop, where, left, tsval, tsecr, mss, opts)
    return tsval, tsecr, mss, opts


def _walk_one(b: list[int], stop: int) -> tuple[list[tuple[int, int]], int | None, int | None]:
    """The reference walk over one option list: the (offset, byte) pairs its branches read,
    and where the last MSS value and the last timestamps start (None when absent)."""
    checks: list[tuple[int, int]] = []
    mss_at: int | None = None
    ts_at: int | None = None
    pos = 0
    while pos < stop:
        kind = b[pos]
        checks.append((pos, kind))
        if kind == 0:
            break
        if kind == 1:
            pos += 1
            continue
        if pos + 2 > stop:
            break
        length = b[pos + 1]
        checks.append((pos + 1, length))
        if length < 2 or pos + length > stop:
            break
        if kind == 2 and length == 4:
            mss_at = pos + 2
        elif kind == 8 and length == 10:
            ts_at = pos + 2
        pos += length
    return checks, mss_at, ts_at


def _walk_all(
    area: U8,
    stop: I64,
    where: I64,
    live: I64,
    tsval: npt.NDArray[np.uint32],
    tsecr: npt.NDArray[np.uint32],
    mss: npt.NDArray[np.uint16],
    opts: npt.NDArray[np.uint8],
) -> None:
    """The reference walk for the rows `live` all at once, one option per pass (<= 40 passes)."""
    area = np.concatenate([area, np.zeros((len(area), 1), np.uint8)], axis=1)
    pos = np.zeros(len(area), np.int64)
    while len(live):
        p = pos[live]
        lim = stop[live]
        going = p < lim
        kind = area[live, np.minimum(p, 40)]
        going &= kind != 0
        nop = going & (kind == 1)
        pos[live[nop]] += 1
        opt = going & ~nop & (p + 2 <= lim)
        length = area[live, np.minimum(p + 1, 40)].astype(np.int64)
        opt &= (length >= 2) & (p + length <= lim)
        sel = live[opt]
        ps, ks, ls = p[opt], kind[opt], length[opt]
        m = (ks == 2) & (ls == 4)
        if m.any():
            rows, q = sel[m], ps[m]
            mss[where[rows]] = (area[rows, q + 2].astype(np.uint16) << 8) | area[rows, q + 3]
            opts[where[rows]] |= OPT_MSS
        t = (ks == 8) & (ls == 10)
        if t.any():
            rows, q = sel[t], ps[t]
            tsval[where[rows]] = _be32(area, rows, q + 2)
            tsecr[where[rows]] = _be32(area, rows, q + 6)
            opts[where[rows]] |= OPT_TS
        pos[sel] += ls
        live = live[nop | opt]


def _be32(area: U8, rows: I64, at: I64 | int) -> npt.NDArray[np.uint32]:
    b = [area[rows, at + k].astype(np.uint32) for k in range(4)]
    return (b[0] << 24) | (b[1] << 16) | (b[2] << 8) | b[3]


def _sll_direction(pkttype: I64, current: npt.NDArray[np.int8]) -> npt.NDArray[np.int8]:
    # PACKET_OUTGOING (4) is "out"; host/broadcast/multicast/otherhost (0-3) are "in".
    out = np.where(pkttype == 4, DIR_OUT, np.where(pkttype <= 3, DIR_IN, current))
    return out.astype(np.int8)

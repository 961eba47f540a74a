"""Index a pcapng file: sections, interfaces (IDBs with their names, timestamp resolution and
offset), comments, and the frames of packet blocks; well-formed stretches of packet blocks are
walked in C with the compiled kernels, everything else (damage included) by the Python loop.
Damage after the first frame is a warning naming the file and byte offset; before it, a
CaptureFormatError.
"""

from __future__ import annotations

import struct
from array import array
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from tracer.errors import CaptureFormatError
from tracer.pcap import fast
from tracer.pcap.chains import Runs, pcapng_runs
from tracer.pcap.columns import DIR_IN, DIR_OUT, DIR_UNKNOWN
from tracer.pcap.decode import Buffer
from tracer.pcap.gather import field, window
from tracer.pcap.records import (
    BT_IDB,
    BT_PB,
    BT_SPB,
    EPB_FLAGS,
    FRAME_BLOCKS,
    IF_NAME,
    IF_TSOFFSET,
    IF_TSRESOL,
    OPT_COMMENT,
    OPT_ENDOFOPT,
    FrameIndex,
    Interface,
)
from tracer.words import printable


def _options(buf: Buffer, start: int, end: int, order: str) -> list[tuple[int, bytes]]:
    """The (code, value) options of a pcapng block between start and end; stops at damage."""
    out: list[tuple[int, bytes]] = []
    head = struct.Struct(order + "HH")
    while start + 4 <= end:
        code, length = head.unpack_from(buf, start)
        if code == OPT_ENDOFOPT:
            break
        if start + 4 + length > end:
            break
        out.append((code, bytes(buf[start + 4 : start + 4 + length])))
        start += 4 + ((length + 3) & ~3)
    return out


@dataclass
class _Section:
    first_frame: int
    order: str
    ifaces: list[int]  # local interface id -> global interface number


class _Offsets:
    """Frame offsets collected one at a time or a whole run at once."""

    def __init__(self) -> None:
        self.pieces: list[npt.NDArray[np.int64]] = []
        self.single = array("q")
        self.count = 0

    def __len__(self) -> int:
        return self.count

    def append(self, pos: int) -> None:
        self.single.append(pos)
        self.count += 1

    def extend(self, run: npt.NDArray[np.int64]) -> None:
        self.pieces.append(np.array(self.single, dtype=np.int64))
        self.single = array("q")
        self.pieces.append(run)
        self.count += len(run)

    def array(self) -> npt.NDArray[np.int64]:
        return np.concatenate([*self.pieces, np.array(self.single, dtype=np.int64)])


def index_pcapng(buf: Buffer, path: str) -> FrameIndex:
    size = len(buf)
    warnings: list[str] = []
    interfaces: list[Interface] = []
    sections: list[_Section] = []
    data = np.frombuffer(buf, dtype=np.uint8)
    all_runs: dict[str, Runs | None] = {}  # per byte order, built when a section has it
    runs: Runs | None = None
    offsets = _Offsets()
    append = offsets.append
    pos = 0
    header: struct.Struct | None = None
    trailer: struct.Struct | None = None
    frame_blocks = FRAME_BLOCKS
    room: npt.NDArray[np.int64] | None = None  # where the compiled walk writes block offsets
    while pos < size:
        if pos + 12 > size:
            warnings.append(f"{path}: at byte {pos}: truncated block header ({size - pos} bytes)")
            break
        if bytes(buf[pos : pos + 4]) == b"\x0a\x0d\x0d\x0a":
            bom = bytes(buf[pos + 8 : pos + 12])
            if bom == b"\x4d\x3c\x2b\x1a":
                order = "<"
            elif bom == b"\x1a\x2b\x3c\x4d":
                order = ">"
            else:
                _damage(
                    path, pos, f"section header has byte-order magic {bom.hex()}", offsets, warnings
                )
                break
            header = struct.Struct(order + "II")
            trailer = struct.Struct(order + "I")
            if order not in all_runs and fast.native is None:
                all_runs[order] = pcapng_runs(buf, data, order)
            runs = all_runs.get(order)
            sections.append(_Section(len(offsets), order, []))
        if header is None or trailer is None:
            raise CaptureFormatError(
                path, "pcapng file does not start with a section header", offset=0
            )
        if fast.native is not None:
            if room is None:
                # Room for every packet block the file can hold (each is at least 12 bytes);
                # pages the runs leave unused are never touched, so cost nothing.
                room = np.empty(size // 12 + 1, np.int64)
            k, pos_after = fast.native.pcapng_walk(buf, pos, order == "<", room)
            if k:
                offsets.extend(room[:k].copy())
                pos = pos_after
                continue
        elif runs is not None and (k := runs.find(pos)) >= 0:
            run, pos = runs.take(k)
            offsets.extend(run)
            continue
        btype, blen = header.unpack_from(buf, pos)
        if (
            blen < 12
            or blen & 3
            or pos + blen > size
            or trailer.unpack_from(buf, pos + blen - 4)[0] != blen
        ):
            what = "runs past the end of the file" if pos + blen > size else "is inconsistent"
            _damage(path, pos, f"block type {btype:#x} length {blen} {what}", offsets, warnings)
            break
        if btype in frame_blocks:
            append(pos)
        elif btype == BT_IDB:
            sections[-1].ifaces.append(len(interfaces))
            interfaces.append(_parse_idb(buf, pos, blen, sections[-1].order, path, warnings))
        pos += blen
    return _frames_from_blocks(buf, path, offsets, sections, interfaces, warnings)


def _damage(path: str, pos: int, message: str, offsets: _Offsets, warnings: list[str]) -> None:
    if not len(offsets):
        raise CaptureFormatError(path, message, offset=pos)
    warnings.append(f"{path}: at byte {pos}: {message}; read the {len(offsets)} frames before it")


def _parse_idb(
    buf: Buffer, pos: int, blen: int, order: str, path: str, warnings: list[str]
) -> Interface:
    if blen < 20:
        warnings.append(f"{path}: at byte {pos}: interface description block too short ({blen})")
        return Interface(0, 0)
    linktype, _, snaplen = struct.unpack_from(order + "HHI", buf, pos + 8)
    name: str | None = None
    tsresol = 6
    tsoffset = 0
    for code, value in _options(buf, pos + 16, pos + blen - 4, order):
        if code == IF_NAME:
            name = printable(value.rstrip(b"\0").decode("utf-8", "replace"))
        elif code == IF_TSRESOL and len(value) >= 1:
            tsresol = value[0]
        elif code == IF_TSOFFSET and len(value) == 8:
            tsoffset = struct.unpack(order + "q", value)[0]
    return Interface(linktype, snaplen, name, tsresol, tsoffset)


def _to_ns(ticks: npt.NDArray[np.int64], tsresol: int) -> npt.NDArray[np.int64]:
    """Timestamp units of an interface to nanoseconds, without overflowing int64."""
    # Exponents past what int64 ticks can hold are nonsense; clamping keeps the arithmetic defined.
    exp = min(tsresol & 0x7F, 62)
    if tsresol & 0x80:  # 2^-exp seconds
        sec = ticks >> exp
        frac = ticks & ((1 << exp) - 1)
        if exp > 32:
            frac = frac >> (exp - 32)
            exp = 32
        return sec * 1_000_000_000 + ((frac * 1_000_000_000) >> exp)
    if exp <= 9:
        return ticks * (10 ** (9 - exp))
    return ticks // (10 ** (exp - 9)) if exp < 28 else np.zeros_like(ticks)


# Nanoseconds since 1970 in an int64 end in April 2262.
_NS_LIMIT = float(np.iinfo(np.int64).max)


def _checked_ns(
    ticks: npt.NDArray[np.int64], spec: Interface, gid: int, path: str, warnings: list[str]
) -> npt.NDArray[np.int64]:
    """An interface's timestamps in ns. Those int64 nanoseconds cannot hold (ticks at or past
    2^63, or an if_tsoffset that carries them out of 1678-2262) become 0, "no timestamp", with a
    warning, rather than wrapping into some other year."""
    exp = min(spec.tsresol & 0x7F, 62)
    per_tick = 2.0**-exp if spec.tsresol & 0x80 else 10.0**-exp
    offset_ns = spec.tsoffset * 1_000_000_000
    if not -_NS_LIMIT < offset_ns < _NS_LIMIT:
        if len(ticks):
            warnings.append(
                f"{path}: interface {gid}: if_tsoffset {spec.tsoffset} s is out of range;"
                f" its {len(ticks)} frame(s) are shown without a time"
            )
        return np.zeros(len(ticks), np.int64)
    # ticks were built from two u32 halves: a negative value is a wrapped count at or past 2^63.
    approx = ticks.astype(np.float64) * (per_tick * 1e9) + float(offset_ns)
    bad = (ticks < 0) | ~(np.abs(approx) < _NS_LIMIT * 0.999)
    with np.errstate(over="ignore"):
        out = _to_ns(np.where(bad, 0, ticks), spec.tsresol) + np.int64(offset_ns)
    if bad.any():
        out[bad] = 0
        warnings.append(
            f"{path}: interface {gid}: {int(bad.sum())} frame(s) have a timestamp beyond what"
            " nanoseconds since 1970 can hold (years 1678-2262); shown without a time"
        )
    return out


def _frames_from_blocks(
    buf: Buffer,
    path: str,
    offsets: _Offsets,
    sections: list[_Section],
    interfaces: list[Interface],
    warnings: list[str],
) -> FrameIndex:
    blocks = offsets.array()
    n = len(blocks)
    data = np.frombuffer(buf, dtype=np.uint8)
    btype = np.zeros(n, np.int64)
    blen = np.zeros(n, np.int64)
    local_if = np.zeros(n, np.int64)
    ts_hi = np.zeros(n, np.int64)
    ts_lo = np.zeros(n, np.int64)
    caplen = np.zeros(n, np.int64)
    origlen = np.zeros(n, np.int64)
    iface = np.full(n, -1, np.int32)
    # Fields are gathered per section: each has its own byte order and interface numbering.
    bounds = [s.first_frame for s in sections] + [n]
    for k, sec in enumerate(sections):
        sl = slice(bounds[k], bounds[k + 1])
        b = blocks[sl]
        if not len(b):
            continue
        e = sec.order
        head = window(data, b, 28)  # the EPB/PB header; an SPB uses only its first 12 bytes
        bt = field(head, 0, e + "u4")
        btype[sl] = bt
        blen[sl] = field(head, 4, e + "u4")
        # The obsolete PB has a 16-bit interface id followed by a 16-bit drop count.
        ifid = np.where(
            bt == BT_PB,
            field(head, 8, e + "u2"),
            np.where(bt == BT_SPB, 0, field(head, 8, e + "u4")),
        )
        local_if[sl] = ifid
        ts_hi[sl] = field(head, 12, e + "u4")
        ts_lo[sl] = field(head, 16, e + "u4")
        caplen[sl] = field(head, 20, e + "u4")
        origlen[sl] = np.where(bt == BT_SPB, field(head, 8, e + "u4"), field(head, 24, e + "u4"))
        table = np.array(sec.ifaces + [-1], dtype=np.int64)
        known = (ifid >= 0) & (ifid < len(sec.ifaces))
        iface[sl] = np.where(known, table[np.where(known, ifid, len(sec.ifaces))], -1)
    is_spb = btype == BT_SPB
    data_off = blocks + np.where(is_spb, 12, 28)
    room = blen - np.where(is_spb, 16, 32)  # bytes the block has for data and options
    unknown_if = iface < 0
    if unknown_if.any():
        first = int(np.flatnonzero(unknown_if)[0])
        warnings.append(
            f"{path}: at byte {int(blocks[first])}: {int(unknown_if.sum())} packet blocks name an "
            "interface no IDB described; they are left undecoded"
        )
    lt_table = np.array([i.linktype for i in interfaces] + [-1], dtype=np.int32)
    snap_table = np.array([i.snaplen for i in interfaces] + [0], dtype=np.int64)
    linktype = lt_table[iface]
    # A simple packet block has no caplen: it is the original length cut to the snaplen.
    snap = snap_table[iface]
    spb_cap = np.where(snap > 0, np.minimum(origlen, snap), origlen)
    caplen = np.where(is_spb, np.minimum(spb_cap, room), caplen)
    lying = caplen > room
    if lying.any():
        first = int(np.flatnonzero(lying)[0])
        warnings.append(
            f"{path}: at byte {int(blocks[first])}: packet block caplen {int(caplen[first])} exceeds "
            f"its block length; {int(lying.sum())} frame(s) cut to the block"
        )
        caplen = np.minimum(caplen, np.maximum(room, 0))
    ticks = (ts_hi << 32) | ts_lo
    t_ns = np.zeros(n, np.int64)
    for gid in np.unique(iface):
        if gid < 0:
            continue
        sel = (iface == gid) & ~is_spb
        spec = interfaces[int(gid)]
        t_ns[sel] = _checked_ns(ticks[sel], spec, int(gid), path, warnings)
    direction = np.full(n, DIR_UNKNOWN, np.int8)
    comments: dict[int, str] = {}
    has_opts = ~is_spb & (room - ((caplen + 3) & ~3) > 0)
    order_of = np.zeros(n, np.int8)
    for k, sec in enumerate(sections):
        order_of[bounds[k] : bounds[k + 1]] = 1 if sec.order == "<" else 0
    for i in np.flatnonzero(has_opts).tolist():
        order = "<" if order_of[i] else ">"
        start = int(data_off[i] + ((caplen[i] + 3) & ~3))
        for code, value in _options(buf, start, int(blocks[i] + blen[i] - 4), order):
            if code == OPT_COMMENT:
                comments[i] = printable(value.decode("utf-8", "replace"), lines=True)
            elif code == EPB_FLAGS and len(value) == 4:
                inbound_outbound = struct.unpack(order + "I", value)[0] & 0x3
                if inbound_outbound == 1:
                    direction[i] = DIR_IN
                elif inbound_outbound == 2:
                    direction[i] = DIR_OUT
    return FrameIndex(
        data_off=data_off,
        caplen=caplen,
        origlen=origlen,
        t_ns=t_ns,
        linktype=linktype.astype(np.int32),
        iface=iface,
        direction=direction,
        interfaces=tuple(interfaces),
        comments=comments,
        warnings=tuple(warnings),
    )

"""Find the frames of a pcap or pcapng file: where each one's bytes are and its record metadata.

Records form a chain (each header gives the next one's offset), so finding them is sequential.
With the compiled kernels (`fast.native`) the chain is walked in C: a pcap file's whole walk,
and each stretch of well-formed pcapng packet blocks (anything else, damage included, is left to
the Python loop, which handles it exactly as without them). Without them, a Python loop walks the
chain, but jumps along "runs" of records that numpy found beforehand by following many chains at
once from start points spread over the file; the loop only enters a run at an offset it reached
itself, so the result is exactly the plain walk's. Per-frame fields (timestamps, lengths,
interface ids) are gathered with numpy (by the C walk, for pcap). Nothing here looks inside a
frame. Damage after the first frame becomes a warning naming the file and byte offset; damage
before it is a CaptureFormatError.
"""

from __future__ import annotations

import dataclasses
import mmap
import struct
from array import array
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from tracer.errors import CaptureFormatError
from tracer.pcap import fast
from tracer.pcap.columns import DIR_IN, DIR_OUT, DIR_UNKNOWN
from tracer.pcap.decode import Buffer
from tracer.pcap.gather import field, gather, window
from tracer.words import printable

# A record longer than this is damage, not a frame (BIG TCP tops out near 512 KiB).
MAX_CAPLEN = 1 << 24

PCAP_MAGIC_US = 0xA1B2C3D4
PCAP_MAGIC_NS = 0xA1B23C4D
PCAPNG_SHB = 0x0A0D0D0A
PCAPNG_BOM = 0x1A2B3C4D
BT_IDB = 1
BT_PB = 2  # obsolete Packet Block
BT_SPB = 3
BT_EPB = 6
FRAME_BLOCKS = frozenset((BT_PB, BT_SPB, BT_EPB))

OPT_ENDOFOPT = 0
OPT_COMMENT = 1
IF_NAME = 2
IF_TSRESOL = 9
IF_TSOFFSET = 14
EPB_FLAGS = 2


@dataclass(frozen=True)
class Interface:
    """One pcapng IDB (or the single implicit interface of a pcap file)."""

    linktype: int
    snaplen: int
    name: str | None = None
    tsresol: int = 6  # if_tsresol as stored: MSB clear = 10^-n s, MSB set = 2^-n s
    tsoffset: int = 0  # seconds added to every timestamp (if_tsoffset)


@dataclass(frozen=True)
class FrameIndex:
    """Where every frame of a file is, and what its record header says."""

    data_off: npt.NDArray[np.int64]  # absolute offset of the frame's first byte
    caplen: npt.NDArray[np.int64]
    origlen: npt.NDArray[np.int64]
    t_ns: npt.NDArray[np.int64]
    linktype: npt.NDArray[np.int32]
    iface: npt.NDArray[np.int32]  # pcapng interface (numbered across sections), -1 for pcap
    direction: npt.NDArray[np.int8]
    interfaces: tuple[Interface, ...] = ()
    comments: dict[int, str] = dataclasses.field(default_factory=dict)
    warnings: tuple[str, ...] = ()

    def __len__(self) -> int:
        return int(self.data_off.shape[0])


def index_capture(buf: Buffer, path: str, *, drop: bool = False) -> FrameIndex:
    """Index the frames of a whole capture file held in `buf` (bytes or an mmap).

    `drop=True` (for a read-only mmap of the file) hands the pages the walk has read back to the
    kernel as it goes, so that they do not pile up in RSS; they are read again on the next touch.
    """
    if len(buf) == 0:
        raise CaptureFormatError(path, "the file is empty", offset=0)
    if len(buf) < 4:
        raise CaptureFormatError(path, "too short to be a capture file", offset=0)
    head = bytes(buf[:4])
    if head == b"\x0a\x0d\x0d\x0a":
        return _index_pcapng(buf, path)
    for order in ("<", ">"):
        magic = struct.unpack(order + "I", head)[0]
        if magic in (PCAP_MAGIC_US, PCAP_MAGIC_NS):
            return _index_pcap(buf, path, order, magic == PCAP_MAGIC_NS, drop)
    raise CaptureFormatError(
        path,
        f"not a pcap or pcapng file (magic {head.hex()})",
        offset=0,
        hint="pathtrace reads libpcap (.pcap) and pcapng files, as tcpdump -w writes them",
    )


# Records per chain walked in parallel: few enough that the chains take few numpy steps, enough
# that finding each chain's start costs little. The spacing in bytes follows from the average
# record size (a fixed `_CHAIN_SPACING` overrides it; tests use that to force many chains).
_CHAIN_RECORDS = 512
_CHAIN_SPACING: int | None = None
# Records a chain start must link through, read one by one, before it is trusted as a start.
_START_HOPS = 4
# Look-alikes of a record start tried after each boundary before giving up on that stretch.
_START_TRIES = 16


@dataclass(frozen=True)
class _Runs:
    """Likely record/block starts found by walking many chains with numpy, sorted.

    `nxt[k]` is the offset the record at `starts[k]` says comes next; a run is a stretch of
    starts where each one's `nxt` is the following start. The walk only jumps along a run from a
    position it has itself reached, which makes every record in the run a real one: the result
    is exactly the plain loop's, minus the Python work per record.
    """

    starts: npt.NDArray[np.int64]
    nxt: npt.NDArray[np.int64]
    breaks: npt.NDArray[np.int64]  # indexes k where nxt[k] != starts[k + 1]: the ends of runs

    @classmethod
    def build(cls, starts: npt.NDArray[np.int64], nxt: npt.NDArray[np.int64]) -> _Runs | None:
        if not len(starts):
            return None
        breaks = np.append(np.flatnonzero(nxt[:-1] != starts[1:]), len(starts) - 1)
        return cls(starts, nxt, breaks)

    def find(self, pos: int) -> int:
        """The candidate index at `pos`, or -1."""
        k = int(np.searchsorted(self.starts, pos))
        return k if k < len(self.starts) and int(self.starts[k]) == pos else -1

    def take(self, k: int) -> tuple[npt.NDArray[np.int64], int]:
        """The run of starts beginning at candidate k, and the position after its last record."""
        end = int(self.breaks[np.searchsorted(self.breaks, k)])
        return self.starts[k : end + 1], int(self.nxt[end])


# One step of every chain at once: positions in, (the step is valid, next position) out.
_Step = Callable[[npt.NDArray[np.int64]], tuple[npt.NDArray[np.bool_], npt.NDArray[np.int64]]]


def _walk_chains(starts: list[int], size: int, step: _Step) -> _Runs | None:
    """Follow every chain from its start until it reaches the next chain's start (or fails)."""
    if not starts:
        return None
    first = np.array(starts, dtype=np.int64)
    limit = np.append(first[1:], size)
    pos = first.copy()
    live = np.arange(len(first))
    seen: list[npt.NDArray[np.int64]] = []
    following: list[npt.NDArray[np.int64]] = []
    chain: list[npt.NDArray[np.int64]] = []
    while len(live):
        here = pos[live]
        ok, nxt = step(here)
        seen.append(here[ok])
        following.append(nxt[ok])
        chain.append(live[ok])
        pos[live] = nxt
        live = live[ok & (nxt < limit[live])]
    at = np.concatenate(seen)
    # Chain k stays within [starts[k], starts[k + 1]) and moves forward, so ordering by chain
    # (stable, a radix sort for 16-bit keys) sorts the positions without comparing them.
    key = np.concatenate(chain)
    order = np.argsort(key.astype(np.uint16) if len(first) < 1 << 16 else at, kind="stable")
    return _Runs.build(at[order], np.concatenate(following)[order])


def _spacing(buf: Buffer, first: int, size: int, length_of: Callable[[int], int]) -> int:
    """Bytes between chain starts, from the average length of the first records."""
    if _CHAIN_SPACING is not None:
        return _CHAIN_SPACING
    pos, count = first, 0
    while count < 256 and pos + 32 <= size:
        length = length_of(pos)
        if length <= 0:
            break
        pos += length
        count += 1
    average = (pos - first) // count if count else 1 << 16
    return int(min(max(average * _CHAIN_RECORDS, 4096), 1 << 20))


def _chain_starts(
    buf: Buffer,
    first: int,
    size: int,
    spacing: int,
    key_at: int,
    key: bytes,
    plausible: Callable[[int], bool],
) -> list[int]:
    """A likely record start shortly after every `spacing` bytes: the first place past each
    boundary holding `key` (at offset key_at of a record) from which `plausible` holds."""
    find = buf.find if not isinstance(buf, memoryview) else bytes(buf).find
    starts = [first]
    for bound in range(first + spacing, size - 16, spacing):
        q = bound + key_at
        end = min(size, bound + spacing)
        # Bounded effort: a stretch full of look-alikes just gets no chain of its own.
        for _ in range(_START_TRIES):
            q = find(key, q, end)
            if q < 0:
                break
            if plausible(q - key_at):
                starts.append(q - key_at)
                break
            q += 1
    return starts


def _pcap_runs(buf: Buffer, data: npt.NDArray[np.uint8], order: str, nanos: bool) -> _Runs | None:
    size = len(buf)
    caplen_at = struct.Struct(order + "I")
    spacing = _spacing(buf, 24, size, lambda pos: 16 + int(caplen_at.unpack_from(buf, pos + 8)[0]))
    if size < 24 + 2 * spacing:
        return None  # a few chains at most: the plain walk is as quick
    # Records of one capture share the high 16 bits of ts_sec (they change every 18 hours): a
    # literal that finds likely record headers, and a check that a chain stays on records.
    key_at = 2 if order == "<" else 0
    key = bytes(buf[24 + key_at : 24 + key_at + 2])
    head = struct.Struct(order + "4xIII")
    frac_limit = 1_000_000_000 if nanos else 1_000_000

    def plausible(pos: int) -> bool:
        for _ in range(_START_HOPS):
            if pos + 16 > size:
                return pos <= size
            frac, caplen, origlen = head.unpack_from(buf, pos)
            if bytes(buf[pos + key_at : pos + key_at + 2]) != key:
                return False
            if frac >= frac_limit or caplen > MAX_CAPLEN or caplen > origlen:
                return False
            pos += 16 + caplen
        return True

    def step(here: npt.NDArray[np.int64]) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.int64]]:
        rows = window(data, here, 16)
        caplen = field(rows, 8, order + "u4")
        nxt = here + 16 + caplen
        ok = (caplen <= MAX_CAPLEN) & (nxt <= size) & (rows[:, key_at] == key[0])
        return ok & (rows[:, key_at + 1] == key[1]), nxt

    starts = _chain_starts(buf, 24, size, spacing, key_at, key, plausible)
    return _walk_chains(starts, size, step)


def _pcapng_runs(buf: Buffer, data: npt.NDArray[np.uint8], order: str) -> _Runs | None:
    size = len(buf)
    u32 = struct.Struct(order + "I")
    spacing = _spacing(buf, 0, size, lambda pos: int(u32.unpack_from(buf, pos + 4)[0]) & ~3)
    if size < 2 * spacing:
        return None
    head = struct.Struct(order + "II12xI")
    key = u32.pack(BT_EPB)

    def epb_at(pos: int) -> int:
        """The length of a well-formed EPB at pos, or 0."""
        if pos & 3 or pos + 32 > size:
            return 0
        btype, blen, caplen = head.unpack_from(buf, pos)
        if btype != BT_EPB or blen < 32 or blen & 3 or pos + blen > size or caplen + 32 > blen:
            return 0
        return int(blen) if u32.unpack_from(buf, pos + blen - 4)[0] == blen else 0

    def plausible(pos: int) -> bool:
        for _ in range(_START_HOPS):
            if pos == size:
                return True
            if not (blen := epb_at(pos)):
                return False
            pos += blen
        return True

    def step(here: npt.NDArray[np.int64]) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.int64]]:
        rows = window(data, here, 24)
        blen = field(rows, 4, order + "u4")
        nxt = here + blen
        ok = (field(rows, 0, order + "u4") == BT_EPB) & (blen >= 32) & (blen % 4 == 0)
        ok &= (nxt <= size) & (field(rows, 20, order + "u4") + 32 <= blen)
        ok &= gather(data, np.where(ok, nxt - 4, 0), order + "u4") == blen
        return ok, nxt

    starts = _chain_starts(buf, 0, size, spacing, 0, key, lambda p: p % 4 == 0 and plausible(p))
    return _walk_chains(starts[1:], size, step)


def _index_pcap(buf: Buffer, path: str, order: str, nanos: bool, drop: bool) -> FrameIndex:
    size = len(buf)
    if size < 24:
        raise CaptureFormatError(
            path, f"pcap file header needs 24 bytes, the file has {size}", offset=0
        )
    _, _, _, _, _, snaplen, linktype_field = struct.unpack_from(order + "IHHiIII", buf, 0)
    linktype = linktype_field & 0xFFFF  # upper bits may carry the FCS length
    warnings: list[str] = []
    if fast.native is not None:
        data_off, caplen_a, origlen, t_ns, pos, bad_caplen = _walk_native(buf, order, nanos, drop)
    else:
        data_off, caplen_a, origlen, t_ns, pos, bad_caplen = _walk_numpy(buf, order, nanos)
    n = len(data_off)
    if bad_caplen >= 0:
        message = (
            f"record header says caplen {bad_caplen} (more than {MAX_CAPLEN}): the file is damaged"
        )
        if not n:
            raise CaptureFormatError(path, message, offset=pos)
        warnings.append(f"{path}: at byte {pos}: {message}; read the {n} frames before it")
    elif pos > size:
        last = int(data_off[-1]) - 16
        warnings.append(
            f"{path}: at byte {last}: the last record is truncated (caplen {int(caplen_a[-1])}, "
            f"{size - last - 16} bytes present); read the {n - 1} frames before it"
        )
        n -= 1
        data_off, caplen_a, origlen, t_ns = data_off[:n], caplen_a[:n], origlen[:n], t_ns[:n]
        if not n:
            raise CaptureFormatError(path, "the only record is truncated", offset=last)
    elif pos < size:
        if not n:
            # A header cut short before any frame: nothing was read, and saying "0 frames"
            # with success would hide that the file is damaged.
            raise CaptureFormatError(
                path, f"the first record header is truncated ({size - pos} of 16 bytes)", offset=pos
            )
        warnings.append(
            f"{path}: at byte {pos}: truncated record header ({size - pos} of 16 bytes); "
            f"read the {n} frames before it"
        )
    return FrameIndex(
        data_off=data_off,
        caplen=caplen_a,
        origlen=origlen,
        t_ns=t_ns,
        linktype=np.full(n, linktype, dtype=np.int32),
        iface=np.full(n, -1, dtype=np.int32),
        direction=np.full(n, DIR_UNKNOWN, dtype=np.int8),
        interfaces=(Interface(linktype, snaplen),),
        warnings=tuple(warnings),
    )


# What a pcap walk gives: data_off, caplen, origlen, t_ns of every record it passed (the last
# one may run past the end of the file), the position where it stopped, and the absurd caplen
# that stopped it (-1 when it was the end of the file).
_Walk = tuple[
    npt.NDArray[np.int64],
    npt.NDArray[np.int64],
    npt.NDArray[np.int64],
    npt.NDArray[np.int64],
    int,
    int,
]


def _walk_native(buf: Buffer, order: str, nanos: bool, drop: bool = False) -> _Walk:
    """The record walk in C, filling the record metadata as it goes."""
    assert fast.native is not None
    little = order == "<"
    # With drop, pages are handed back behind the walk: the headers are all it reads.
    drop = drop and isinstance(buf, mmap.mmap)
    size = len(buf)
    pos, bad = 24, -1
    chunks: list[list[npt.NDArray[np.int64]]] = []
    while True:
        # Room for every record of at least 48 bytes (a frame of 32): real captures never need
        # a second chunk, and pages of the room left unused are never touched, so cost nothing.
        room = max(1024, (size - pos) // 48 + 1)
        out = [np.empty(room, np.int64) for _ in range(4)]
        filled, pos, bad = fast.native.pcap_walk(buf, pos, little, nanos, drop, *out)
        chunks.append([a[:filled] for a in out])
        if filled < room or bad >= 0 or pos + 16 > size:
            break
    if len(chunks) == 1:
        data_off, caplen, origlen, t_ns = chunks[0]
    else:
        data_off, caplen, origlen, t_ns = (np.concatenate(c) for c in zip(*chunks, strict=True))
    return data_off, caplen, origlen, t_ns, pos, bad


def _walk_numpy(buf: Buffer, order: str, nanos: bool) -> _Walk:
    size = len(buf)
    data = np.frombuffer(buf, dtype=np.uint8)
    runs = _pcap_runs(buf, data, order, nanos)
    pieces: list[npt.NDArray[np.int64]] = []
    offsets = array("q")
    append = offsets.append
    caplen_at = struct.Struct(order + "I").unpack_from
    pos = 24
    bad_caplen = -1
    # The only per-frame Python work: hop from record header to record header, or along a whole
    # precomputed run of them.
    while pos + 16 <= size:
        if runs is not None and (k := runs.find(pos)) >= 0:
            if offsets:
                pieces.append(np.array(offsets, dtype=np.int64))
                offsets = array("q")
                append = offsets.append
            run, pos = runs.take(k)
            pieces.append(run)
            continue
        caplen = caplen_at(buf, pos + 8)[0]
        if caplen > MAX_CAPLEN:
            bad_caplen = caplen
            break
        append(pos)
        pos += 16 + caplen
    pieces.append(np.array(offsets, dtype=np.int64))
    rec = np.concatenate(pieces)
    e = order
    header = window(data, rec, 16)
    sec = field(header, 0, e + "u4")
    frac = field(header, 4, e + "u4")
    t_ns = sec * 1_000_000_000 + (frac if nanos else frac * 1000)
    caplen_a = field(header, 8, e + "u4")
    return rec + 16, caplen_a, field(header, 12, e + "u4"), t_ns, pos, bad_caplen


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


def _index_pcapng(buf: Buffer, path: str) -> FrameIndex:
    size = len(buf)
    warnings: list[str] = []
    interfaces: list[Interface] = []
    sections: list[_Section] = []
    data = np.frombuffer(buf, dtype=np.uint8)
    all_runs: dict[str, _Runs | None] = {}  # per byte order, built when a section has it
    runs: _Runs | None = None
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
                all_runs[order] = _pcapng_runs(buf, data, order)
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

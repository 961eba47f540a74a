"""`read_frames`: one capture file (pcap or pcapng) into a `Frames` of numpy columns.

The file is mapped once. `container` finds the frames; the compiled kernel (`fast.native`) or,
without it, the vectorised fast path (`fast`, a batch at a time) decodes those of common layout
and the reference decoder (`decode`) the rest; addresses are interned once at the end. Pages of
the mapping are handed back to the kernel as soon as they are decoded, so the capture's own bytes
do not pile up in RSS. This module is the only one in the package that decodes a file (`payload`
reads a frame's payload bytes back for the protocol decoders); it never prints and lets only
tracer.errors escape for bad input.
"""

from __future__ import annotations

import bisect
import contextlib
import dataclasses
import mmap
import os
import socket
import struct
from collections.abc import Iterator

import numpy as np
import numpy.typing as npt

from tracer.errors import CaptureFormatError
from tracer.memory import give_back
from tracer.pcap import fast
from tracer.pcap.columns import COLUMN_NAMES, COLUMNS, Frames, store_constants_once
from tracer.pcap.container import index_capture
from tracer.pcap.decode import (
    LINKTYPE_ETHERNET,
    LINKTYPE_IPV4,
    LINKTYPE_LINUX_SLL,
    LINKTYPE_LINUX_SLL2,
    LINKTYPE_RAW,
    LINKTYPE_RAW_LEGACY,
    Row,
    decode_frame,
)
from tracer.pcap.records import FrameIndex

# Frames decoded per vectorised pass. Small on purpose: temporaries stay below the size at
# which malloc maps fresh pages for each one, which costs more than the numpy work itself.
BATCH = 1 << 13

# Columns the reference decoder fills (src/dst and encap are converted separately).
_ROW_COLUMNS = tuple(n for n in COLUMN_NAMES if n not in ("t_ns", "origlen", "src", "dst", "encap"))
# Key space for address interning: IPv4 addresses are their own 32-bit value, IPv6 addresses get
# ids above it in first-seen order (they are rare enough to intern in a dict).
_V6_BASE = 1 << 32


def read_frames(path: str | os.PathLike[str], *, vectorise: bool = True) -> Frames:
    """Decode every frame of a pcap/pcapng file down to its innermost IP packet.

    Damage after the first frame is reported in `Frames.warnings` (file and byte offset); a file
    that is not a capture, or is damaged before its first frame, raises CaptureFormatError.
    `Frames.linktypes` is the link type of each interface (pcapng) or of the file (pcap).
    `vectorise=False` decodes every frame with the reference decoder (slow; for cross-checks).
    """
    name = os.fspath(path)
    with _mapped(name) as mapped:
        frames = _decode_all(mapped, name, vectorise)
    give_back()  # the temporaries of the read are freed now
    return frames


class _Interner:
    def __init__(self) -> None:
        self.encaps: dict[tuple[str, ...], int] = {}
        self.v6: dict[bytes, int] = {}

    def encap(self, stack: tuple[str, ...]) -> int:
        eid = self.encaps.get(stack)
        if eid is None:
            if len(self.encaps) >= 255:
                stack = ("other",)
                return self.encaps.setdefault(stack, len(self.encaps))
            eid = self.encaps[stack] = len(self.encaps)
        return eid

    def address(self, raw: bytes) -> int:
        if len(raw) == 4:
            return int.from_bytes(raw, "big")
        if len(raw) == 16:
            return _V6_BASE + self.v6.setdefault(raw, len(self.v6))
        return -1


def iter_frames(path: str | os.PathLike[str], *, rows: int = 1 << 16) -> Iterator[Frames]:
    """The frames of a capture in consecutive pieces of up to `rows` frames, each decoded only
    when the previous one has been used: for output that starts at once and stays small however
    large the file (`pathtrace packets big.pcap | head`).

    The file is indexed first (record headers only); every piece has the file's interfaces and
    link types, and its own address and encapsulation tables. The first piece carries the file's
    warnings and every piece the comments of its own frames, numbered within the piece. Errors as
    `read_frames`.
    """
    name = os.fspath(path)
    with _mapped(name) as mapped:
        index = index_capture(mapped, name, drop=True)
        _drop(mapped, 0, len(mapped))
        n = len(index)
        for start in range(0, max(n, 1), rows):
            stop = min(n, start + rows)
            piece = dataclasses.replace(
                index,
                **{f: getattr(index, f)[start:stop] for f in _INDEX_ROWS},
                comments={k - start: v for k, v in index.comments.items() if start <= k < stop},
                warnings=index.warnings if start == 0 else (),
            )
            yield _decode_index(mapped, piece, name, True)


_INDEX_ROWS = ("data_off", "caplen", "origlen", "t_ns", "linktype", "iface", "direction")


@contextlib.contextmanager
def _mapped(name: str) -> Iterator[mmap.mmap]:
    try:
        handle = open(name, "rb")
    except OSError as e:
        raise CaptureFormatError(name, f"cannot open: {e.strerror or e}") from e
    with handle:
        if os.fstat(handle.fileno()).st_size == 0:
            raise CaptureFormatError(name, "the file is empty", offset=0)
        try:
            mapped = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
        except (OSError, ValueError) as e:
            raise CaptureFormatError(name, f"cannot map the file: {e}") from e
        try:
            yield mapped
        finally:
            try:
                mapped.close()
            except BufferError:
                # A numpy view still refers to the map (e.g. held by a traceback); the GC frees it.
                pass


def _decode_all(buf: mmap.mmap, path: str, vectorise: bool) -> Frames:
    index = index_capture(buf, path, drop=True)
    # The index pass read every record header: those pages are done with.
    _drop(buf, 0, len(buf))
    return _decode_index(buf, index, path, vectorise)


def _decode_index(buf: mmap.mmap, index: FrameIndex, path: str, vectorise: bool) -> Frames:
    n = len(index)
    data = np.frombuffer(buf, dtype=np.uint8)
    # Left uninitialised: every row is decoded by exactly one of the two paths, and each writes
    # every column but the record metadata below (tests/pcap/test_reader.py checks the fast one).
    cols: dict[str, npt.NDArray[np.generic]] = {
        name: np.empty(n, dtype) for name, dtype, _ in COLUMNS
    }
    # The record metadata already has the column dtypes: take the arrays instead of copying.
    cols["t_ns"] = index.t_ns
    cols["iface"] = index.iface
    cols["direction"] = index.direction
    cols["origlen"][:] = np.minimum(index.origlen, np.iinfo(np.int32).max)
    src = np.empty(n, dtype=np.int64)  # address keys, written for every row like the columns
    dst = np.empty(n, dtype=np.int64)
    interner = _Interner()
    if vectorise and fast.native is not None:
        _decode_native(buf, index, cols, src, dst, interner)
    else:
        _decode_numpy(buf, data, index, cols, src, dst, interner, vectorise)
    del data
    addresses, address_keys = _intern_addresses(src, dst, cols, interner)
    del src, dst
    return Frames(
        path=path,
        linktypes=tuple(i.linktype for i in index.interfaces),
        columns=store_constants_once(cols),
        encaps=tuple(sorted(interner.encaps, key=interner.encaps.__getitem__)),
        addresses=addresses,
        interfaces={
            k: i.name
            for k, i in enumerate(index.interfaces)
            if i.name is not None and i.linktype != LINKTYPE_LINUX_SLL2
        },
        comments=dict(index.comments),
        warnings=index.warnings,
        address_keys=address_keys,
    )


def _decode_numpy(
    buf: mmap.mmap,
    data: npt.NDArray[np.uint8],
    index: FrameIndex,
    cols: dict[str, npt.NDArray[np.generic]],
    src: npt.NDArray[np.int64],
    dst: npt.NDArray[np.int64],
    interner: _Interner,
    vectorise: bool,
) -> None:
    n = len(index)
    for start in range(0, n, BATCH):
        stop = min(n, start + BATCH)
        done = np.zeros(stop - start, dtype=bool)
        linktypes = index.linktype[start:stop]
        if vectorise:
            for linktype in np.unique(linktypes).tolist():
                if linktype not in fast.LAYOUTS:
                    continue
                sel = np.flatnonzero(linktypes == linktype) + start
                group = fast.decode_group(
                    data, index.data_off[sel], index.caplen[sel], linktype, index.direction[sel]
                )
                rows = sel[group.rows]
                # The usual case, a batch of one link type decoded whole, writes plain slices.
                target: slice | npt.NDArray[np.int64] = rows
                if len(rows) == stop - start:
                    target = slice(start, stop)
                for column, values in group.columns.items():
                    cols[column][target] = values
                src[target] = group.src
                dst[target] = group.dst
                ids = np.array([interner.encap(s) for s in group.stacks], dtype=np.uint8)
                cols["encap"][target] = ids[group.encap]
                done[rows - start] = True
        rest = np.flatnonzero(~done) + start
        if len(rest):
            _decode_rest(buf, index, rest, cols, src, dst, interner)
        _drop_rows(buf, index, start, stop)


# Link types the compiled kernel decodes, and their slot in its table of encap ids.
_NATIVE_SLOTS = {
    LINKTYPE_ETHERNET: 0,
    LINKTYPE_LINUX_SLL2: 1,
    LINKTYPE_LINUX_SLL: 2,
    LINKTYPE_RAW: 3,
    LINKTYPE_IPV4: 3,
    **{lt: 3 for lt in LINKTYPE_RAW_LEGACY},
}
# The columns the compiled kernel writes, in the order it takes them (see _native.c).
NATIVE_COLUMNS = tuple(n for n in COLUMN_NAMES if n not in ("t_ns", "src", "dst", "origlen"))


def _decode_native(
    buf: mmap.mmap,
    index: FrameIndex,
    cols: dict[str, npt.NDArray[np.generic]],
    src: npt.NDArray[np.int64],
    dst: npt.NDArray[np.int64],
    interner: _Interner,
) -> None:
    """Every frame of common layout in one call to the compiled kernel, the rest in Python."""
    assert fast.native is not None
    n = len(index)
    if len(index.interfaces) == 1:
        present = [index.interfaces[0].linktype]
    else:
        present = np.unique(index.linktype).tolist()
    ids = bytearray(b"\xff" * 24)
    for linktype in sorted(present):
        if linktype not in _NATIVE_SLOTS:
            continue
        link = fast.LAYOUTS[linktype][0]
        head = (link,) if link else ()
        slot = _NATIVE_SLOTS[linktype]
        for family, (base, l4s) in enumerate(((0, _L4_V4), (12, _L4_V6))):
            for k, l4 in enumerate(l4s):
                ids[base + slot * 3 + k] = interner.encap((*head, ("ipv4", "ipv6")[family], l4))
    done = np.zeros(n, dtype=np.uint8)
    arrays = tuple(cols[name] for name in NATIVE_COLUMNS) + (src, dst, done)
    fast.native.decode(
        buf, index.data_off, index.caplen, index.linktype, bytes(ids), arrays, 0, n, True
    )
    # The IPv6 addresses it left as offsets, interned in C (the interner holds none yet: the
    # Python-decoded rows come after), in first-seen order: the n-th is key 2^32 + n.
    assert not interner.v6
    distinct = fast.native.intern6(buf, src, dst, done)
    interner.v6.update((distinct[k : k + 16], k // 16) for k in range(0, len(distinct), 16))
    rest = np.flatnonzero(done == 0)
    del done
    for start in range(0, len(rest), BATCH):
        part = rest[start : start + BATCH]
        _decode_rest(buf, index, part, cols, src, dst, interner)
        _drop(
            buf,
            int(index.data_off[part[0]]),
            int(index.data_off[part[-1]] + index.caplen[part[-1]]),
        )


_L4_V4 = ("tcp", "udp", "icmp")
_L4_V6 = ("tcp", "udp", "icmpv6")


_PAGE = mmap.PAGESIZE


def _drop(buf: mmap.mmap, start: int, stop: int) -> None:
    """The mapped file's bytes [start, stop) are decoded: drop their pages from RSS (they stay
    in the page cache, and come back on the next touch)."""
    if not isinstance(buf, mmap.mmap) or not hasattr(mmap, "MADV_DONTNEED"):
        return
    start -= start % _PAGE
    stop = min(stop, len(buf))
    if stop > start:
        buf.madvise(mmap.MADV_DONTNEED, start, stop - start)


def _drop_rows(buf: mmap.mmap, index: FrameIndex, start: int, stop: int) -> None:
    if stop > start:
        last = stop - 1
        _drop(buf, int(index.data_off[start]), int(index.data_off[last] + index.caplen[last]))


def _decode_rest(
    buf: mmap.mmap,
    index: FrameIndex,
    rest: npt.NDArray[np.int64],
    cols: dict[str, npt.NDArray[np.generic]],
    src: npt.NDArray[np.int64],
    dst: npt.NDArray[np.int64],
    interner: _Interner,
) -> None:
    offs = index.data_off[rest].tolist()
    caps = index.caplen[rest].tolist()
    lts = index.linktype[rest].tolist()
    ifs = index.iface[rest].tolist()
    dirs = index.direction[rest].tolist()
    rows: list[Row] = [
        decode_frame(buf, o, c, lt, i, d)
        for o, c, lt, i, d in zip(offs, caps, lts, ifs, dirs, strict=True)
    ]
    for column in _ROW_COLUMNS:
        cols[column][rest] = [getattr(r, column) for r in rows]
    cols["encap"][rest] = [interner.encap(tuple(r.encap)) for r in rows]
    src[rest] = [interner.address(r.src) for r in rows]
    dst[rest] = [interner.address(r.dst) for r in rows]


def _intern_addresses(
    src: npt.NDArray[np.int64],
    dst: npt.NDArray[np.int64],
    cols: dict[str, npt.NDArray[np.generic]],
    interner: _Interner,
) -> tuple[tuple[str, ...], npt.NDArray[np.int64]]:
    """The address table (texts) and, per address, its IPv4 number or -1 (Frames.address_keys);
    rewrites the src/dst columns from keys to ids into that table."""
    v6 = sorted(interner.v6, key=interner.v6.__getitem__)
    texts: list[str]
    if fast.native is not None:
        # A hash of the distinct keys in C: the same sorted ids as the numpy way, and the text
        # of each IPv4 address made there; IPv6 keys come after them.
        texts, other, numbers = fast.native.intern(src, dst, cols["src"], cols["dst"])
        v4_keys = np.frombuffer(numbers, dtype=np.uint32).astype(np.int64)
    else:
        keys = _intern_numpy(src, dst, cols)
        v4 = bisect.bisect_left(keys, _V6_BASE)
        texts = [socket.inet_ntoa(struct.pack(">I", key)) for key in keys[:v4]]
        other = keys[v4:]
        v4_keys = np.array(keys[:v4], dtype=np.int64)
    texts.extend(socket.inet_ntop(socket.AF_INET6, v6[key - _V6_BASE]) for key in other)
    address_keys = np.full(len(texts), -1, dtype=np.int64)
    address_keys[: v4_keys.shape[0]] = v4_keys
    return tuple(texts), address_keys


def _intern_numpy(
    src: npt.NDArray[np.int64], dst: npt.NDArray[np.int64], cols: dict[str, npt.NDArray[np.generic]]
) -> list[int]:
    n = len(src)
    keys = np.concatenate([src, dst])
    present = keys >= 0
    values = keys[present]
    # A capture holds few distinct addresses: find them from a sample, then look every key up by
    # binary search; only keys the sample missed need a full sort.
    sample = np.unique(values[:: max(1, len(values) // 65536)])
    where = np.minimum(np.searchsorted(sample, values), max(len(sample) - 1, 0))
    missed = sample[where] != values if len(sample) else np.ones(len(values), dtype=bool)
    unique = np.union1d(sample, values[missed]) if missed.any() else sample
    ids = np.full(2 * n, -1, dtype=np.int32)
    ids[present] = np.searchsorted(unique, values)
    cols["src"][:] = ids[:n]
    cols["dst"][:] = ids[n:]
    keys_list: list[int] = unique.tolist()
    return keys_list

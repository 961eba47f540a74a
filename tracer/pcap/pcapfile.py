"""Index a libpcap file: the walk from record header to record header (in C with the compiled
kernels, else a Python loop along numpy's precomputed runs), then each record's metadata gathered
with numpy. Damage after the first frame is a warning naming the file and byte offset; before it,
a CaptureFormatError.
"""

from __future__ import annotations

import mmap
import struct
from array import array

import numpy as np
import numpy.typing as npt

from tracer.errors import CaptureFormatError
from tracer.pcap import fast
from tracer.pcap.chains import pcap_runs
from tracer.pcap.columns import DIR_UNKNOWN
from tracer.pcap.decode import Buffer
from tracer.pcap.gather import field, window
from tracer.pcap.records import MAX_CAPLEN, FrameIndex, Interface


def index_pcap(buf: Buffer, path: str, order: str, nanos: bool, drop: bool) -> FrameIndex:
    size = len(buf)
    if size < 24:
        raise CaptureFormatError(
            path, f"pcap file header needs 24 bytes, the file has {size}", offset=0
        )
    _, _, _, _, _, snaplen, linktype_field = struct.unpack_from(order + "IHHiIII", buf, 0)
    linktype = linktype_field & 0xFFFF  # upper bits may carry the FCS length
    warnings: list[str] = []
    if fast.native is not None:
        data_off, caplen_a, origlen, t_ns, pos, bad_caplen = walk_native(buf, order, nanos, drop)
    else:
        data_off, caplen_a, origlen, t_ns, pos, bad_caplen = walk_numpy(buf, order, nanos)
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
Walk = tuple[
    npt.NDArray[np.int64],
    npt.NDArray[np.int64],
    npt.NDArray[np.int64],
    npt.NDArray[np.int64],
    int,
    int,
]


def walk_native(buf: Buffer, order: str, nanos: bool, drop: bool = False) -> Walk:
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


def walk_numpy(buf: Buffer, order: str, nanos: bool) -> Walk:
    size = len(buf)
    data = np.frombuffer(buf, dtype=np.uint8)
    runs = pcap_runs(buf, data, order, nanos)
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

"""Vectorised reads of fixed-size fields at many positions of one byte buffer.

Pure numpy over a uint8 view of the mapped file: no file I/O and no Python loop per position.
Reading a whole header row per position (one memory access pattern) beats gathering each field
element by element, which on large files costs one cache miss per byte read.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

I64 = npt.NDArray[np.int64]
U8 = npt.NDArray[np.uint8]


def window(data: U8, pos: I64, width: int) -> U8:
    """`width` bytes starting at each position, one row per position (zeros past the end)."""
    size = len(data)
    inside = (pos >= 0) & (pos <= size - width)
    if size >= width:
        # An overlapping view of `width`-byte records, one starting at every byte: indexing it
        # copies each row with one memcpy, unlike element-wise indexing (one access per byte).
        rows = np.ndarray(
            (size - width + 1,), dtype=np.dtype(("V", width)), buffer=data, strides=(1,)
        )
        if inside.all():
            return rows[pos].view(np.uint8).reshape(-1, width)
    out = np.zeros((len(pos), width), dtype=np.uint8)
    if size >= width and inside.any():
        out[inside] = rows[pos[inside]].view(np.uint8).reshape(-1, width)
    tail = np.flatnonzero(~inside)
    idx = pos[tail][:, None] + np.arange(width, dtype=np.int64)
    present = (idx >= 0) & (idx < size)
    if size:
        out[tail] = np.where(present, data[np.clip(idx, 0, size - 1)], 0)
    return out


def field(rows: U8, at: int, fmt: str) -> I64:
    """The integer of numpy format `fmt` (e.g. '<u4', '>u2') at column `at` of every row."""
    width = np.dtype(fmt).itemsize
    return np.ascontiguousarray(rows[:, at : at + width]).view(fmt)[:, 0].astype(np.int64)


def gather(data: U8, pos: I64, fmt: str) -> I64:
    """One integer of format `fmt` at each absolute position."""
    return field(window(data, pos, np.dtype(fmt).itemsize), 0, fmt)

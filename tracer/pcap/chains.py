"""Record starts found by following many record chains at once with numpy.

A capture's records form a chain (each header gives the next one's offset). From start points
spread over the file, numpy follows every chain in parallel until it reaches the next one's start;
the stretches where the chains agree are `Runs`, which the sequential walks (`pcapfile`,
`pcapngfile`) jump along, entering a run only at an offset they reached themselves, so that the
result is exactly the plain walk's. Used when the compiled kernels are not there (and for
pcapng's stretches the C walk leaves to Python).
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from tracer.pcap.decode import Buffer
from tracer.pcap.gather import field, gather, window
from tracer.pcap.records import BT_EPB, MAX_CAPLEN

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
class Runs:
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
    def build(cls, starts: npt.NDArray[np.int64], nxt: npt.NDArray[np.int64]) -> Runs | None:
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


def _walk_chains(starts: list[int], size: int, step: _Step) -> Runs | None:
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
    return Runs.build(at[order], np.concatenate(following)[order])


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


def pcap_runs(buf: Buffer, data: npt.NDArray[np.uint8], order: str, nanos: bool) -> Runs | None:
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


def pcapng_runs(buf: Buffer, data: npt.NDArray[np.uint8], order: str) -> Runs | None:
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

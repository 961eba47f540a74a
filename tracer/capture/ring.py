"""A point's rolling window: its pcap stream kept in a ring of segment files, cut to a window.

While `capture --until` waits, each point's stream goes to RUN/.ring/<point>/ in segments of
records; once the segments hold more than the ring's size the oldest is deleted, so disk use stays
at the ring size (plus one segment) whatever the traffic, and memory at one record. `finish` writes
RUN/points/<point>.pcap with the records of the window asked for (or all the ring holds) and
removes the segments. Every complete record is handed to `on_record` as it arrives (the watcher).
Must not hold the capture in memory.
"""

from __future__ import annotations

import os
import shutil
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from tracer.capture.writer import (
    LINKTYPE_ETHERNET,
    LINKTYPE_LINUX_SLL2,
    PCAP_HEADER_LEN,
    RECORD_HEADER_LEN,
    empty_pcap_header,
)

# (endianness, nanosecond timestamps) by magic.
_MAGICS = {
    b"\xd4\xc3\xb2\xa1": ("<", False),
    b"\xa1\xb2\xc3\xd4": (">", False),
    b"\x4d\x3c\xb2\xa1": ("<", True),
    b"\xa1\xb2\x3c\x4d": (">", True),
}
SEGMENTS = 8  # the ring is cut in this many files: at most 1/8 of it is lost at each turn
MIN_RING_BYTES = 64 * 1024
DEFAULT_RING_BYTES = 64 * 1024 * 1024

# (link type, timestamp ns, the record's whole bytes, offset of its data in them, captured length)
OnRecord = Callable[[int, int, bytes, int, int], None]


@dataclass
class _Segment:
    path: Path
    first_ns: int | None = None
    last_ns: int | None = None
    bytes: int = 0
    packets: int = 0


class RingSink:
    """One point's stream into a ring of `ring_bytes`; `finish` cuts the window to `path`."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        ring_dir: str | os.PathLike[str],
        ring_bytes: int,
        interface: str = "any",
        on_record: OnRecord | None = None,
    ) -> None:
        self.path = Path(path)
        self.ring_dir = Path(ring_dir)
        self.ring_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.ring_bytes = ring_bytes
        self.segment_bytes = max(ring_bytes // SEGMENTS, 4096)
        self._interface = interface
        self._on_record = on_record
        self._lock = threading.Lock()
        self._pending = bytearray()
        self._header: bytes | None = None
        self._rec = struct.Struct("<IIII")
        self._nanos = False
        self.linktype: int | None = None
        self._segments: list[_Segment] = []
        self._file: IO[bytes] | None = None
        self._n = 0
        # What went through the ring, and what it had to let go.
        self.seen_packets = 0
        self.seen_bytes = 0
        self.evicted_packets = 0
        self.evicted_bytes = 0
        self.evicted_until_ns: int | None = None  # the newest record the ring has forgotten
        # Once the trigger fired: records from this time on are never evicted; if the ring
        # fills with them, later records are dropped instead (and counted).
        self.protect_from: int | None = None
        self.overflow_packets = 0
        # After `finish`: what the run keeps (the PcapSink fields the lifecycle reads).
        self.packets = 0
        self.bytes = 0
        self.error: str | None = None
        self.closed = False
        self.full = False
        self.max_bytes: int | None = None
        self.cut_mid_record = False

    # -- filling ---------------------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        if not data:
            return
        with self._lock:
            if self.closed or self.error is not None:
                return
            self._pending += data
            self._drain()
            # Progress shows what has been seen so far.
            self.packets, self.bytes = self.seen_packets, self.seen_bytes

    def _drain(self) -> None:
        buf = self._pending
        pos = 0
        if self._header is None:
            if len(buf) < PCAP_HEADER_LEN:
                return
            magic = bytes(buf[:4])
            if magic not in _MAGICS:
                self.error = f"not a pcap stream (magic {magic.hex()})"
                return
            endian, self._nanos = _MAGICS[magic]
            self._rec = struct.Struct(endian + "IIII")
            self._header = bytes(buf[:PCAP_HEADER_LEN])
            (self.linktype,) = struct.unpack_from(endian + "I", self._header, 20)
            self.linktype &= 0x0FFFFFFF  # the upper bits carry FCS flags
            pos = PCAP_HEADER_LEN
        n = len(buf)
        while n - pos >= RECORD_HEADER_LEN:
            sec, frac, incl, _ = self._rec.unpack_from(buf, pos)
            end = pos + RECORD_HEADER_LEN + incl
            if end > n:
                break
            record = bytes(buf[pos:end])
            ts = sec * 1_000_000_000 + (frac if self._nanos else frac * 1000)
            self._store(ts, record)
            if self._on_record is not None and self.linktype is not None:
                self._on_record(self.linktype, ts, record, RECORD_HEADER_LEN, incl)
            pos = end
        del buf[:pos]

    def protect(self, start_ns: int) -> None:
        """Keep every record from `start_ns` on (the window); lock-free, from any thread."""
        self.protect_from = start_ns

    def _store(self, ts: int, record: bytes) -> None:
        self.seen_packets += 1
        self.seen_bytes += len(record)
        seg = self._segments[-1] if self._segments else None
        if seg is None or seg.bytes >= self.segment_bytes:
            if not self._rotate():
                self.overflow_packets += 1
                return
            seg = self._segments[-1]
        assert self._file is not None
        self._file.write(record)
        seg.bytes += len(record)
        seg.packets += 1
        seg.first_ns = ts if seg.first_ns is None else seg.first_ns
        seg.last_ns = ts

    def _rotate(self) -> bool:
        """Start a new segment, evicting the oldest to make room; False if the window forbids."""
        # The new segment counts from now: drop the oldest while the rest exceed the ring.
        while self._segments and self._held() > self.ring_bytes - self.segment_bytes:
            old = self._segments[0]
            protect = self.protect_from
            if protect is not None and old.last_ns is not None and old.last_ns >= protect:
                return False  # it holds part of the window: keep it, drop what comes now
            self._segments.pop(0)
            old.path.unlink(missing_ok=True)
            self.evicted_packets += old.packets
            self.evicted_bytes += old.bytes
            self.evicted_until_ns = old.last_ns
        if self._file is not None:
            self._file.close()
        path = self.ring_dir / f"{self._n:08d}.seg"
        self._n += 1
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        self._file = os.fdopen(fd, "wb")
        self._segments.append(_Segment(path))
        return True

    def _held(self) -> int:
        return sum(s.bytes for s in self._segments)

    @property
    def held_bytes(self) -> int:
        with self._lock:
            return self._held()

    @property
    def oldest_ns(self) -> int | None:
        """The oldest record the ring still holds."""
        with self._lock:
            return next((s.first_ns for s in self._segments if s.first_ns is not None), None)

    # -- cutting ---------------------------------------------------------------------------------

    def finish(self, start_ns: int | None = None, end_ns: int | None = None) -> None:
        """Write the records with start_ns <= time <= end_ns (None: unbounded) and drop the ring."""
        with self._lock:
            if self.closed:
                return
            self.closed = True
            if self._file is not None:
                self._file.close()
            self.cut_mid_record = bool(self._pending) and self._header is not None
            kept_packets = kept_bytes = 0
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as out:
                link = LINKTYPE_LINUX_SLL2 if self._interface == "any" else LINKTYPE_ETHERNET
                out.write(self._header or empty_pcap_header(link))
                for seg in self._segments:
                    if seg.first_ns is None:
                        continue
                    if (end_ns is not None and seg.first_ns > end_ns) or (
                        start_ns is not None and seg.last_ns is not None and seg.last_ns < start_ns
                    ):
                        continue
                    p, b = self._copy(seg.path, out, start_ns, end_ns)
                    kept_packets += p
                    kept_bytes += b
            shutil.rmtree(self.ring_dir, ignore_errors=True)
            self.packets = kept_packets
            self.bytes = PCAP_HEADER_LEN + kept_bytes

    def _copy(
        self, path: Path, out: IO[bytes], start_ns: int | None, end_ns: int | None
    ) -> tuple[int, int]:
        data = path.read_bytes()
        pos = packets = kept = 0
        n = len(data)
        while pos + RECORD_HEADER_LEN <= n:
            sec, frac, incl, _ = self._rec.unpack_from(data, pos)
            end = pos + RECORD_HEADER_LEN + incl
            ts = sec * 1_000_000_000 + (frac if self._nanos else frac * 1000)
            if (start_ns is None or ts >= start_ns) and (end_ns is None or ts <= end_ns):
                out.write(data[pos:end])
                packets += 1
                kept += end - pos
            pos = end
        return packets, kept

    def close(self) -> None:
        """Keep everything the ring holds (an interrupted or failed run)."""
        self.finish()

    @property
    def truncated(self) -> bool:
        return self.cut_mid_record

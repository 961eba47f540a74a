"""Payload bytes read back from the capture files, by frame, for the protocol decoders.

`Frames` keep only where each frame's L4 payload lies in its file (`payload_off`) and how much of
it was captured (`pcap_len`); this module reads those bytes when a decoder needs them: a few
frames through `PayloadReader`, or many at once by slicing `MappedFiles`. Reading is a courtesy
to a summary: a file gone or unreadable since it was decoded gives b"", never an error.
"""

from __future__ import annotations

import mmap
from collections.abc import Sequence
from typing import Any, BinaryIO

from tracer.pcap.columns import Frames

# How many payload bytes a decoder may look at: enough for a request line, a Host header, a DNS
# message with a few answers and a ClientHello's extensions.
MAX_BYTES = 2048


class PayloadReader:
    """Reads payload bytes by frame, keeping each capture file open until `close` (a --list of
    thousands of connections would otherwise open the same files thousands of times)."""

    def __init__(self, limit: int = MAX_BYTES) -> None:
        self.limit = limit
        self._files: dict[str, BinaryIO | None] = {}

    def __enter__(self) -> PayloadReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for f in self._files.values():
            if f is not None:
                f.close()
        self._files.clear()

    def read(self, frames: Frames, frame: int) -> bytes:
        """The captured L4 payload of one frame; b"" when absent or unreadable."""
        if not 0 <= frame < len(frames):
            return b""
        off = int(frames.columns["payload_off"][frame])
        n = min(int(frames.columns["pcap_len"][frame]), self.limit)
        if off < 0 or n <= 0:
            return b""
        if frames.path not in self._files:
            try:
                self._files[frames.path] = open(frames.path, "rb")
            except OSError:
                # A summary is a courtesy: a file gone since it was read must not fail the report.
                self._files[frames.path] = None
        f = self._files[frames.path]
        if f is None:
            return b""
        try:
            f.seek(off)
            return f.read(n)
        except OSError:
            return b""


def read_payload(frames: Frames, frame: int, limit: int = MAX_BYTES) -> bytes:
    """The captured L4 payload of one frame (at most `limit` bytes); b"" when absent or unreadable."""
    with PayloadReader(limit) as reader:
        return reader.read(frames, frame)


class MappedFiles:
    """The capture files mapped read-only, one per point (None where a file cannot be read)."""

    def __init__(self, frames: Sequence[Frames]) -> None:
        self.maps: list[Any] = []
        self._files: list[BinaryIO] = []
        for fr in frames:
            try:
                f = open(fr.path, "rb")
                self._files.append(f)
                self.maps.append(mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ))
            except (OSError, ValueError):
                # A summary is a courtesy: a file gone since it was read must not fail a listing.
                self.maps.append(None)

    def close(self) -> None:
        for m in self.maps:
            if m is not None:
                m.close()
        for f in self._files:
            f.close()

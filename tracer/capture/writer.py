"""Writes one point's pcap stream to RUN/points/<point>.pcap as it arrives.

Counts complete records while writing (for progress and the manifest) and, on close, cuts the
file back to the last complete record, so a stream cut mid-packet still leaves a valid pcap. A
stream that never delivered the global header gets an empty pcap of the link type tcpdump would
have used. Reads nothing from the network; must not hold the whole capture in memory.
"""

from __future__ import annotations

import os
import struct
import threading
from pathlib import Path

PCAP_HEADER_LEN = 24
RECORD_HEADER_LEN = 16
# tcpdump's link types: -i any is LINUX_SLL2 (276) on current libpcap; an interface is Ethernet.
LINKTYPE_ETHERNET = 1
LINKTYPE_LINUX_SLL2 = 276
_MAGICS = {
    b"\xd4\xc3\xb2\xa1": "<",
    b"\xa1\xb2\xc3\xd4": ">",
    b"\x4d\x3c\xb2\xa1": "<",  # nanosecond resolution
    b"\xa1\xb2\x3c\x4d": ">",
}


def empty_pcap_header(linktype: int, snaplen: int = 262144) -> bytes:
    return struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, snaplen, linktype)


class PcapSink:
    """A file being filled from a byte stream, tracking record boundaries."""

    def __init__(
        self, path: str | os.PathLike[str], interface: str = "any", max_bytes: int | None = None
    ) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        self._f = os.fdopen(fd, "wb")
        self._interface = interface
        self._lock = threading.Lock()
        self.bytes = 0
        self.packets = 0
        self.valid_end = 0  # offset after the last complete record (0 until the header is in)
        self._endian: str | None = None
        self._buf = b""  # bytes of the current incomplete header/record header
        self._skip = 0  # payload bytes still to come for the current record
        self.error: str | None = None
        self.closed = False
        # --max-bytes: keep whole records up to the limit, drop what comes after.
        self.max_bytes = max_bytes
        self.full = False
        self._kept_end = 0
        self._kept_packets = 0

    def write(self, data: bytes) -> None:
        if not data:
            return
        with self._lock:
            if self.closed or self.full:
                return
            self._f.write(data)
            self._f.flush()
            self.bytes += len(data)
            self._scan(data)
            if self.max_bytes is not None:
                self._check_limit()

    def _boundary(self, end: int) -> None:
        """A record (or the file header) ends at byte `end`."""
        self.valid_end = end
        if self.max_bytes is not None and end <= self.max_bytes:
            self._kept_end, self._kept_packets = end, self.packets

    def _check_limit(self) -> None:
        assert self.max_bytes is not None
        # Full once a boundary passed the limit, or the record in flight ends beyond it.
        in_flight_end = self.bytes + self._skip if self._skip else self.bytes
        if self.valid_end > self.max_bytes or in_flight_end > self.max_bytes:
            self.full = True

    def _scan(self, data: bytes) -> None:
        i = 0
        n = len(data)
        while i < n:
            if self._skip:
                take = min(self._skip, n - i)
                self._skip -= take
                i += take
                if self._skip == 0:
                    self.packets += 1
                    self._boundary(self.bytes - (n - i))
                continue
            need = (PCAP_HEADER_LEN if self._endian is None else RECORD_HEADER_LEN) - len(self._buf)
            take = min(need, n - i)
            self._buf += data[i : i + take]
            i += take
            if take < need:
                return
            if self._endian is None:
                endian = _MAGICS.get(self._buf[:4])
                if endian is None:
                    self.error = f"not a pcap stream (magic {self._buf[:4].hex()})"
                    # Stop scanning; the file keeps what arrived for inspection.
                    self._skip = 1 << 62
                    return
                self._endian = endian
                self._boundary(self.bytes - (n - i))
            else:
                (incl,) = struct.unpack(self._endian + "8xI4x", self._buf)
                self._skip = incl
                if incl == 0:
                    self.packets += 1
                    self._boundary(self.bytes - (n - i))
            self._buf = b""

    def close(self) -> None:
        """Cut to the last complete record (or write an empty header) and close."""
        with self._lock:
            if self.closed:
                return
            self.closed = True
            self._f.close()
            if self.error is not None:
                return
            if self.full:
                os.truncate(self.path, self._kept_end)
                self.valid_end = self.bytes = self._kept_end
                self.packets = self._kept_packets
                return
            if self._endian is None:
                link = LINKTYPE_LINUX_SLL2 if self._interface == "any" else LINKTYPE_ETHERNET
                with open(self.path, "wb") as f:
                    f.write(empty_pcap_header(link))
                self.valid_end = PCAP_HEADER_LEN
            elif self.valid_end < self.bytes:
                os.truncate(self.path, self.valid_end)

    @property
    def truncated(self) -> bool:
        return self.closed and self.valid_end < self.bytes

"""A pcap stream cut anywhere, in chunks of any size, still leaves a valid capture file."""

from __future__ import annotations

import os
import stat
import struct
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from tracer.capture.writer import PcapSink


def _stream(sizes: list[int]) -> bytes:
    out = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 256, 1)
    for i, n in enumerate(sizes):
        out += struct.pack("<IIII", 1000 + i, 0, n, n) + bytes([i % 256]) * n
    return out


def _records(data: bytes) -> list[bytes]:
    """Independent reader: the frames of a little-endian pcap, failing on any inconsistency."""
    assert data[:4] == b"\xd4\xc3\xb2\xa1" and len(data) >= 24
    off, frames = 24, []
    while off < len(data):
        assert off + 16 <= len(data), "truncated record header"
        (incl,) = struct.unpack_from("<I", data, off + 8)
        assert off + 16 + incl <= len(data), "truncated record"
        frames.append(data[off + 16 : off + 16 + incl])
        off += 16 + incl
    return frames


@settings(max_examples=150, deadline=None)
@given(
    sizes=st.lists(st.integers(0, 300), max_size=12),
    cut=st.integers(0, 5000),
    chunk=st.integers(1, 97),
)
def test_cut_stream_keeps_complete_packets(
    tmp_path_factory: object, sizes: list[int], cut: int, chunk: int
) -> None:
    path = Path(tmp_path_factory.mktemp("w")) / "p.pcap"  # type: ignore[attr-defined]
    full = _stream(sizes)
    data = full[:cut]
    sink = PcapSink(path, "eth0")
    for i in range(0, len(data), chunk):
        sink.write(data[i : i + chunk])
    sink.close()
    written = path.read_bytes()
    frames = _records(written)
    expected = _records(full)
    assert frames == expected[: len(frames)]
    # Every packet whose last byte arrived is kept.
    complete = sum(1 for k in range(len(sizes)) if len(_stream(sizes[: k + 1])) <= cut)
    assert len(frames) == sink.packets == complete
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_stream_without_header_becomes_an_empty_capture(tmp_path: Path) -> None:
    sink = PcapSink(tmp_path / "a.pcap", "any")
    sink.write(b"\xd4\xc3")
    sink.close()
    data = (tmp_path / "a.pcap").read_bytes()
    assert _records(data) == []
    assert struct.unpack_from("<I", data, 20)[0] == 276  # LINUX_SLL2, as tcpdump -i any writes


def test_garbage_is_reported_not_hidden(tmp_path: Path) -> None:
    sink = PcapSink(tmp_path / "g.pcap")
    sink.write(b"sh: tcpdump: not found\n" * 3)
    sink.close()
    assert sink.error is not None and "not a pcap stream" in sink.error


@settings(max_examples=150, deadline=None)
@given(
    sizes=st.lists(st.integers(0, 300), max_size=12),
    limit=st.integers(24, 3000),
    chunk=st.integers(1, 97),
)
def test_max_bytes_keeps_the_whole_packets_that_fit(
    tmp_path_factory: object, sizes: list[int], limit: int, chunk: int
) -> None:
    path = Path(tmp_path_factory.mktemp("w")) / "p.pcap"  # type: ignore[attr-defined]
    full = _stream(sizes)
    sink = PcapSink(path, "eth0", max_bytes=limit)
    for i in range(0, len(full), chunk):
        sink.write(full[i : i + chunk])
    sink.close()
    written = path.read_bytes()
    # Exactly the leading packets whose last byte lies within the limit, and nothing else.
    fit = sum(1 for k in range(len(sizes)) if len(_stream(sizes[: k + 1])) <= limit)
    assert _records(written) == _records(full)[:fit]
    assert sink.packets == fit and len(written) <= limit
    assert sink.full == (len(full) > limit)

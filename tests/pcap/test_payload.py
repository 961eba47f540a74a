"""Payload bytes read back from a capture file through the `payload_off`/`pcap_len` columns."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tests.pcap.helpers import payload_frames
from tracer.pcap.payload import MappedFiles, PayloadReader, read_payload

REQ = b"GET /hello HTTP/1.1\r\nHost: web\r\n\r\n"
RESP = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


def test_reads_each_frame_payload_and_no_more(tmp_path: Path) -> None:
    frames = payload_frames(tmp_path / "s.pcap", [(53700, REQ, 0, 1), (53700, RESP, 1, 0)])
    with PayloadReader() as reader:
        assert reader.read(frames, 0) == REQ
        assert reader.read(frames, 1) == RESP
        assert reader.read(frames, 2) == b"" and reader.read(frames, -1) == b""
    assert read_payload(frames, 1, limit=8) == RESP[:8]


def test_short_snaplen_and_frames_without_payload(tmp_path: Path) -> None:
    frames = payload_frames(tmp_path / "s.pcap", [(53700, REQ, 0, 1), (53700, RESP, 1, 0)])
    frames.columns["pcap_len"][0] = np.int32(10)  # the capture kept only 10 payload bytes
    frames.columns["payload_off"][1] = -1  # a frame with no L4 payload
    assert read_payload(frames, 0) == REQ[:10]
    assert read_payload(frames, 1) == b""


def test_a_vanished_file_reads_as_nothing(tmp_path: Path) -> None:
    frames = payload_frames(tmp_path / "s.pcap", [(53700, REQ, 0, 1)])
    (tmp_path / "s.pcap").unlink()
    assert read_payload(frames, 0) == b""
    mapped = MappedFiles([frames])
    assert mapped.maps == [None]
    mapped.close()


def test_mapped_files_slice_the_same_bytes(tmp_path: Path) -> None:
    frames = payload_frames(tmp_path / "s.pcap", [(53700, REQ, 0, 1), (53700, RESP, 1, 0)])
    mapped = MappedFiles([frames])
    try:
        off = int(frames.columns["payload_off"][1])
        assert mapped.maps[0][off : off + len(RESP)] == read_payload(frames, 1)
    finally:
        mapped.close()

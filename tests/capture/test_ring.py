"""The rolling window: bounded on disk whatever the traffic, cut to a window, always a valid pcap."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from tests.pcap.craft import Rec, eth, ipv4, pcap, tcp
from tracer.capture.ring import RingSink

T0 = 1_700_000_000_000_000_000
MS = 1_000_000


def records(path: Path) -> list[tuple[int, bytes]]:
    """(timestamp ns, frame) of every record of a microsecond pcap; fails on a cut file."""
    data = path.read_bytes()
    assert data[:4] == b"\xd4\xc3\xb2\xa1"
    out, off = [], 24
    while off < len(data):
        assert off + 16 <= len(data)
        sec, usec, incl = (int.from_bytes(data[off + i : off + i + 4], "little") for i in (0, 4, 8))
        assert off + 16 + incl <= len(data)
        out.append((sec * 10**9 + usec * 1000, data[off + 16 : off + 16 + incl]))
        off += 16 + incl
    return out


def stream(n: int, size: int = 200, step_ms: int = 10) -> bytes:
    return pcap(
        Rec(eth(ipv4(tcp(bytes([i % 256]) * size, 40000 + i % 1000), 6)), T0 + i * step_ms * MS)
        for i in range(n)
    )


def feed(sink: RingSink, data: bytes, chunk: int = 777) -> None:
    for i in range(0, len(data), chunk):  # arbitrary cuts: records span writes
        sink.write(data[i : i + chunk])


def test_the_ring_stays_bounded_and_keeps_the_newest(tmp_path: Path) -> None:
    ring = 64 * 1024
    sink = RingSink(tmp_path / "p.pcap", tmp_path / "ring", ring, interface="eth0")
    data = stream(3000)  # ~780 KiB: twelve times the ring
    largest = 0
    for i in range(0, len(data), 4096):
        sink.write(data[i : i + 4096])
        on_disk = sum(f.stat().st_size for f in (tmp_path / "ring").iterdir())
        largest = max(largest, on_disk)
    assert largest <= ring + 300  # the ring, plus at most one record in flight
    assert sink.seen_packets == 3000 and sink.seen_bytes == len(data) - 24
    assert sink.evicted_packets > 0 and sink.evicted_until_ns is not None
    sink.finish()
    kept = records(tmp_path / "p.pcap")
    assert 0 < len(kept) < 3000 and len(kept) == sink.packets
    # The newest records, in order, none missing from the oldest kept on.
    first = (kept[0][0] - T0) // (10 * MS)
    assert [t for t, _ in kept] == [T0 + i * 10 * MS for i in range(first, 3000)]
    assert sink.evicted_packets + len(kept) == 3000
    assert not (tmp_path / "ring").exists()
    assert stat.S_IMODE(os.stat(tmp_path / "p.pcap").st_mode) == 0o600


def test_finish_cuts_the_window(tmp_path: Path) -> None:
    seen: list[tuple[int, int, int]] = []
    sink = RingSink(
        tmp_path / "p.pcap",
        tmp_path / "ring",
        1 << 20,
        interface="eth0",
        on_record=lambda link, ts, rec, off, n: seen.append((link, ts, len(rec) - off)),
    )
    data = stream(100)
    feed(sink, data)
    assert [ts for _, ts, _ in seen] == [T0 + i * 10 * MS for i in range(100)]
    assert {link for link, _, _ in seen} == {1}
    sink.finish(T0 + 200 * MS, T0 + 500 * MS)
    kept = records(tmp_path / "p.pcap")
    assert [t for t, _ in kept] == [T0 + i * 10 * MS for i in range(20, 51)]
    assert sink.packets == 31 and sink.bytes == (tmp_path / "p.pcap").stat().st_size


def test_a_stream_cut_mid_record_or_never_started(tmp_path: Path) -> None:
    sink = RingSink(tmp_path / "a.pcap", tmp_path / "ra", 1 << 20, interface="eth0")
    data = stream(10)
    sink.write(data[:-50])
    sink.close()
    assert len(records(tmp_path / "a.pcap")) == 9 and sink.truncated
    empty = RingSink(tmp_path / "b.pcap", tmp_path / "rb", 1 << 20, interface="any")
    empty.close()
    assert (tmp_path / "b.pcap").read_bytes()[20:24] == (276).to_bytes(4, "little")
    bad = RingSink(tmp_path / "c.pcap", tmp_path / "rc", 1 << 20)
    bad.write(b"this is not a capture at all")
    assert bad.error is not None and "not a pcap stream" in bad.error


def test_after_the_trigger_the_window_is_kept_and_newer_records_dropped(tmp_path: Path) -> None:
    ring = 64 * 1024
    sink = RingSink(tmp_path / "p.pcap", tmp_path / "ring", ring, interface="eth0")
    data = stream(3000)
    half = len(data) // 2
    feed(sink, data[:half])
    window_start = T0 + 1400 * 10 * MS  # a record the ring still holds
    sink.protect(window_start)
    feed(sink, data[half:])
    on_disk = sum(f.stat().st_size for f in (tmp_path / "ring").iterdir())
    assert on_disk <= ring + 300 and sink.overflow_packets > 0
    sink.finish()
    kept = [t for t, _ in records(tmp_path / "p.pcap")]
    assert kept[0] <= window_start  # the window's start survived the traffic after it
    assert kept == [kept[0] + i * 10 * MS for i in range(len(kept))]  # nothing missing
    assert sink.seen_packets == 3000
    assert sink.evicted_packets + len(kept) + sink.overflow_packets == 3000

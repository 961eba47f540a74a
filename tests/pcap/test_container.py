"""pcap and pcapng containers: headers, sections, interfaces, timestamps, options and damage."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from tests.pcap import craft as c
from tests.pcap.helpers import as_rows, read_both, write
from tracer.errors import CaptureFormatError
from tracer.pcap import read_frames
from tracer.pcap.columns import DIR_IN, DIR_OUT, DIR_UNKNOWN

# Every test here runs against the compiled kernels and the numpy path (see conftest.py).
pytestmark = pytest.mark.usefixtures("kernel")

T0 = 1_700_000_000_000_000_000


def frame(seq: int) -> bytes:
    return c.eth(c.ipv4(c.tcp(b"data", seq=seq), 6))


@pytest.mark.parametrize("order", ["<", ">"])
@pytest.mark.parametrize("nanos", [False, True])
def test_pcap_magic_byte_order_and_resolution(tmp_path: Path, order: str, nanos: bool) -> None:
    recs = [c.Rec(frame(1), T0 + 123_456_789), c.Rec(frame(2), T0 + 2_000_000_001)]
    rows = as_rows(read_both(write(tmp_path, c.pcap(recs, nanos=nanos, order=order))))
    want = (
        [T0 + 123_456_789, T0 + 2_000_000_001] if nanos else [T0 + 123_456_000, T0 + 2_000_000_000]
    )
    assert [r["t_ns"] for r in rows] == want
    assert [r["seq"] for r in rows] == [1, 2]


def test_pcap_linktype_upper_bits_are_masked(tmp_path: Path) -> None:
    frames = read_both(write(tmp_path, c.pcap([frame(3)], linktype=0xF0000001)))
    assert frames.linktypes == (1,)
    assert as_rows(frames)[0]["encap"] == ("eth", "ipv4", "tcp")


def test_pcap_origlen_and_empty_capture(tmp_path: Path) -> None:
    frames = read_both(write(tmp_path, c.pcap([c.Rec(frame(1)[:40], origlen=1514)])))
    assert as_rows(frames)[0]["origlen"] == 1514
    assert len(read_frames(write(tmp_path, c.pcap([])))) == 0


def test_pcapng_sections_interfaces_and_timestamps(tmp_path: Path) -> None:
    v4 = c.ipv4(c.udp(b"n"), 17, "10.5.5.5", "10.6.6.6")
    blob = b"".join(
        [
            c.shb("<"),
            c.idb(1, "<", name="eth0"),  # default resolution: microseconds
            c.idb(0, "<", name="null0", tsresol=9),
            c.block(4, b"\x00\x00\x00\x00"),  # NRB with only the end record
            c.epb(frame(10), 0, 1_700_000_000_000_001, comment="pid=42 cmd=curl"),
            c.epb((2).to_bytes(4, "little") + v4, 1, 1_700_000_000_000_000_002, flags=0x2),
            c.block(5, struct.pack("<IIIHH", 1, 0, 0, 0, 0)),  # ISB
            c.block(0xBAD, struct.pack("<I", 32473) + b"custom"),
            c.shb(">"),
            c.idb(1, ">", name="ens5", tsresol=0x80 | 20, tsoffset=100),
            c.epb(frame(20), 0, (1_700_000_000 << 20) | (1 << 19), ">", flags=0x1),
            c.block(0x40000BAD, struct.pack(">I", 32473) + b"do not copy", ">"),
            c.block(0x0A, struct.pack(">II", 0x544C534B, 0), ">"),  # DSB
            c.spb(frame(30), ">"),
            c.pb(frame(40), 0, 1_700_000_001 << 20, ">"),
            c.shb("<"),
            c.idb(1, "<"),
            c.epb(frame(50), 0, 5),
        ]
    )
    frames = read_both(write(tmp_path, blob, ".pcapng"))
    rows = as_rows(frames)
    assert [r["seq"] for r in rows if r["proto"] == 6] == [10, 20, 30, 40, 50]
    assert frames.linktypes == (1, 0, 1, 1)
    assert frames.interfaces == {0: "eth0", 1: "null0", 2: "ens5"}
    assert [r["iface"] for r in rows] == [0, 1, 2, 2, 2, 3]
    assert [r["t_ns"] for r in rows] == [
        1_700_000_000_000_001_000,
        1_700_000_000_000_000_002,
        (1_700_000_000 + 100) * 1_000_000_000 + 500_000_000,  # 2^-20 ticks, +100 s offset
        0,  # a simple packet block has no timestamp
        (1_700_000_001 + 100) * 1_000_000_000,
        5_000,
    ]
    assert [r["direction"] for r in rows] == [
        DIR_UNKNOWN,
        DIR_OUT,
        DIR_IN,
        DIR_UNKNOWN,
        DIR_UNKNOWN,
        DIR_UNKNOWN,
    ]
    assert frames.comments == {0: "pid=42 cmd=curl"}
    assert rows[1]["encap"] == ("null", "ipv4", "udp") and rows[1]["src"] == "10.5.5.5"


def test_pcapng_spb_is_cut_to_the_snaplen(tmp_path: Path) -> None:
    data = frame(7)
    # The block holds the whole frame, but the interface snaplen says only 54 bytes count.
    blob = c.shb() + c.idb(1, snaplen=54) + c.spb(data)
    (row,) = as_rows(read_both(write(tmp_path, blob, ".pcapng")))
    assert (row["origlen"], row["seq"], row["payload_len"], row["pcap_len"]) == (len(data), 7, 4, 0)


# --- damage --------------------------------------------------------------------------------


def test_truncated_last_record_keeps_the_frames_before(tmp_path: Path) -> None:
    blob = c.pcap([frame(1), frame(2), frame(3)])
    path = write(tmp_path, blob[:-10])
    frames = read_both(path)
    assert [r["seq"] for r in as_rows(frames)] == [1, 2]
    last = len(blob) - (16 + len(frame(3)))
    assert len(frames.warnings) == 1 and str(path) in frames.warnings[0]
    assert f"at byte {last}" in frames.warnings[0]


def test_truncated_record_header(tmp_path: Path) -> None:
    blob = c.pcap([frame(1)]) + b"\x01\x02\x03"
    frames = read_both(write(tmp_path, blob))
    assert len(frames) == 1 and f"at byte {len(blob) - 3}" in frames.warnings[0]


def test_absurd_caplen_mid_file_is_a_warning(tmp_path: Path) -> None:
    good = c.pcap([frame(1)])
    blob = good + struct.pack("<IIII", 1, 0, 0x7FFFFFFF, 60) + b"\0" * 60
    frames = read_both(write(tmp_path, blob))
    assert len(frames) == 1 and f"at byte {len(good)}" in frames.warnings[0]


@pytest.mark.parametrize(
    ("blob", "where"),
    [
        (b"", "empty"),
        (b"\x00\x01", "too short"),
        (b"GET / HTTP/1.1\r\n\r\n" + b"x" * 40, "not a pcap"),
        (struct.pack("<I", 0xA1B2C3D4) + b"\0" * 10, "24 bytes"),
        (c.pcap([]) + struct.pack("<IIII", 1, 0, 0xFFFFFFF0, 60), "caplen"),
        (c.pcap([]) + struct.pack("<IIII", 1, 0, 100, 100) + b"\0" * 10, "truncated"),
        (c.shb()[:-4] + b"\xff\xff\xff\xff", "length"),
        (c.shb() + struct.pack("<II", 6, 10_000) + b"\0" * 20, "past the end"),
        (
            b"\x0a\x0d\x0d\x0a" + struct.pack("<I", 28) + b"\x11\x22\x33\x44" + b"\0" * 16,
            "byte-order",
        ),
    ],
    ids=[
        "empty",
        "tiny",
        "text",
        "short-header",
        "caplen",
        "short-record",
        "trailer",
        "epb-length",
        "bom",
    ],
)
def test_unreadable_files_raise_capture_format_error(
    tmp_path: Path, blob: bytes, where: str
) -> None:
    path = write(tmp_path, blob)
    with pytest.raises(CaptureFormatError) as e:
        read_frames(path)
    assert str(path) in str(e.value) and where in str(e.value)


def test_lying_pcapng_block_after_frames_is_a_warning(tmp_path: Path) -> None:
    good = c.shb() + c.idb(1) + c.epb(frame(1), 0, 1)
    blob = good + struct.pack("<II", 6, 64) + b"\0" * 20
    frames = read_both(write(tmp_path, blob, ".pcapng"))
    assert len(frames) == 1 and f"at byte {len(good)}" in frames.warnings[0]


def test_epb_caplen_longer_than_its_block_is_cut(tmp_path: Path) -> None:
    data = frame(9)
    epb = bytearray(c.epb(data, 0, 1))
    struct.pack_into("<I", epb, 20, len(data) + 400)
    frames = read_both(write(tmp_path, c.shb() + c.idb(1) + bytes(epb), ".pcapng"))
    assert as_rows(frames)[0]["seq"] == 9 and "exceeds" in frames.warnings[0]


def test_epb_naming_an_unknown_interface(tmp_path: Path) -> None:
    frames = read_both(write(tmp_path, c.shb() + c.idb(1) + c.epb(frame(1), 5, 1), ".pcapng"))
    (row,) = as_rows(frames)
    assert row["iface"] == -1 and row["family"] == 0 and "no IDB" in frames.warnings[0]


def test_missing_file_and_directory(tmp_path: Path) -> None:
    for path in (tmp_path / "nope.pcap", tmp_path):
        with pytest.raises(CaptureFormatError) as e:
            read_frames(path)
        assert str(path) in str(e.value)


@pytest.mark.parametrize("tsoffset", [10**10, -(10**10), (1 << 63) - 1, -(1 << 63)])
def test_an_if_tsoffset_past_what_ns_hold_is_a_warning(tmp_path: Path, tsoffset: int) -> None:
    blob = c.shb() + c.idb(1, tsresol=9, tsoffset=tsoffset) + c.epb(frame(1), 0, T0)
    frames = read_both(write(tmp_path, blob, ".pcapng"))
    assert len(frames) == 1
    assert frames.columns["t_ns"].tolist() == [0]  # "no timestamp", not a wrapped year
    assert any(f"if_tsoffset {tsoffset} s is out of range" in w for w in frames.warnings)


def test_timestamps_at_or_past_2_63_ticks_do_not_wrap_to_1969(tmp_path: Path) -> None:
    blob = (
        c.shb()
        + c.idb(1, tsresol=9)
        + c.epb(frame(1), 0, T0)
        + c.epb(frame(2), 0, 1 << 63)
        + c.epb(frame(3), 0, (1 << 64) - 1)
        # microsecond ticks that fit int64 but not once made nanoseconds
        + c.idb(1, tsresol=6)
        + c.epb(frame(4), 1, (1 << 62))
    )
    frames = read_both(write(tmp_path, blob, ".pcapng"))
    assert frames.columns["t_ns"].tolist() == [T0, 0, 0, 0]
    text = " ".join(frames.warnings)
    assert "interface 0: 2 frame(s) have a timestamp beyond" in text
    assert "interface 1: 1 frame(s)" in text


def test_a_first_record_header_cut_short_is_an_error(tmp_path: Path) -> None:
    blob = c.pcap([]) + struct.pack("<IIII", 1, 2, 3, 4)[:9]
    with pytest.raises(CaptureFormatError, match=r"first record header is truncated \(9 of 16"):
        read_frames(write(tmp_path, blob))

"""Rendering frames for `pathtrace packets`: flags, encapsulation split, time, records."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.pcap import craft as c
from tests.pcap.helpers import read_both, write
from tracer.pcap import read_frames
from tracer.pcap.listing import format_time, records, split_stack, table_chunks, tcp_flags_text

# Every test here runs against the compiled kernels and the numpy path (see conftest.py).
pytestmark = pytest.mark.usefixtures("kernel")


def test_tcp_flags_like_tcpdump() -> None:
    assert [tcp_flags_text(f) for f in (0x02, 0x12, 0x18, 0x11, 0x04, 0x14, 0x10, 0x00, 0xC2)] == [
        "S",
        "S.",
        "P.",
        "F.",
        "R",
        "R.",
        ".",
        "none",
        "SEW",
    ]


def test_split_stack_keeps_the_innermost_packet_apart() -> None:
    assert split_stack(("eth", "ipv4", "udp", "vxlan", "eth", "ipv4", "tcp"), 4) == (
        "eth/ipv4/udp/vxlan/eth",
        "tcp",
    )
    assert split_stack(("ipv4", "udp"), 4) == ("-", "udp")
    assert split_stack(("eth", "ipv4", "udp", "vxlan", "eth", "arp"), 4) == ("eth", "udp")
    assert split_stack(("sll2", "arp"), 0) == ("sll2", "arp")


def test_format_time_is_utc_with_nanoseconds() -> None:
    assert format_time(1_700_000_000_000_000_007) == "2023-11-14T22:13:20.000000007Z"
    assert format_time(0) == "-"


def test_records_and_table_for_a_vxlan_frame(tmp_path: Path) -> None:
    inner = c.eth(
        c.ipv4(
            c.tcp(b"hello", 1234, 80, seq=5, ack=6, flags=0x18),
            6,
            "10.244.1.2",
            "10.96.0.10",
            ip_id=77,
            ttl=63,
        )
    )
    blob = c.pcap([c.eth(c.ipv4(c.udp(c.vxlan(inner), 1, 8472), 17)), c.eth(b"\0" * 28, 0x0806)])
    frames = read_both(write(tmp_path, blob))
    first, arp = records(frames)
    assert first == {
        "index": 0,  # position in the file
        "frame": 1,  # Wireshark's number for the first frame
        "t_ns": 1_700_000_000_123_456_000,
        "interface": "-",
        "direction": None,
        "encap": "eth/ipv4/udp/vxlan/eth",
        "proto": "tcp",
        "src": "10.244.1.2",
        "dst": "10.96.0.10",
        "sport": 1234,
        "dport": 80,
        "ip_id": 77,
        "ttl": 63,
        "seq": 5,
        "ack": 6,
        "flags": "P.",
        "payload_len": 5,
    }
    assert (arp["encap"], arp["proto"], arp["src"], arp["payload_len"]) == (
        "eth",
        "arp",
        None,
        None,
    )
    text = "".join(table_chunks([frames]))
    lines = text.splitlines()
    assert len(lines) == 3 and lines[0].split()[:2] == ["frame", "time"]
    assert [line.split()[0] for line in lines[1:]] == ["1", "2"]
    assert "10.244.1.2:1234" in lines[1] and "10.96.0.10:80" in lines[1] and " P. " in lines[1]
    assert len(list(records(frames, limit=1))) == 1


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from([0, 1, 101, 113, 147, 276]), st.lists(st.binary(max_size=120), max_size=6))
def test_fuzz_listing_never_fails_on_what_the_reader_returns(
    linktype: int, datas: list[bytes]
) -> None:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "f.pcap"
        path.write_bytes(c.pcap(datas, linktype))
        frames = read_frames(path)
    docs = list(records(frames, {1: "lo"}))
    assert len(docs) == len(datas)
    assert len("".join(table_chunks([frames])).splitlines()) == len(datas) + 1
    json.dumps(docs)

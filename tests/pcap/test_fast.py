"""The vectorised TCP option walk: any option list gives the reference decoder's values."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.pcap import craft as c
from tests.pcap.helpers import read_rows
from tracer.pcap import fast
from tracer.pcap.columns import OPT_MSS, OPT_TS

# Every test here runs against the compiled kernels and the numpy path (see conftest.py).
pytestmark = pytest.mark.usefixtures("kernel")

MSS = b"\x02\x04"
TS = b"\x08\x0a"


def _ts(tsval: int, tsecr: int) -> bytes:
    return TS + struct.pack(">II", tsval, tsecr)


def test_many_layouts_in_one_file_each_give_their_own_values(tmp_path: Path) -> None:
    # More distinct layouts than the fast path learns one by one: the rest are walked together.
    layouts = []
    for pad in range(fast.MAX_LAYOUTS + 4):
        nops = b"\x01" * (pad % 4)
        body = nops + MSS + struct.pack(">H", 1000 + pad) + b"\x01" * (pad // 4) + _ts(pad, 7)
        layouts.append(body + b"\0" * (-len(body) % 4))
    frames = [c.eth(c.ipv4(c.tcp(b"data", options=o), 6)) for o in layouts * 3]
    rows = read_rows(tmp_path, c.pcap(frames))
    for i, row in enumerate(rows):
        pad = i % len(layouts)
        assert (row["mss"], row["tsval"], row["tsecr"]) == (1000 + pad, pad, 7)
        assert row["opts"] == OPT_TS | OPT_MSS
        assert row["payload_len"] == 4


def test_mss_then_nop_nop_ts_syn_layout(tmp_path: Path) -> None:
    options = MSS + struct.pack(">H", 1460) + b"\x01\x01" + _ts(0xDEADBEEF, 0)
    (row,) = read_rows(
        tmp_path, c.pcap([c.eth(c.ipv4(c.tcp(b"", flags=0x02, options=options), 6))])
    )
    assert (row["mss"], row["tsval"], row["tsecr"]) == (1460, 0xDEADBEEF, 0)


def test_a_cut_option_list_keeps_the_options_before_the_cut(tmp_path: Path) -> None:
    # TS whose length runs past the header's end: the MSS before it still counts.
    options = MSS + struct.pack(">H", 536) + TS + b"\0\0"
    (row,) = read_rows(tmp_path, c.pcap([c.eth(c.ipv4(c.tcp(b"x", options=options), 6))]))
    assert (row["mss"], row["opts"], row["tsval"]) == (536, OPT_MSS, 0)


# Option bytes drawn mostly from the values the walk branches on, so that lists are often
# well-formed, sometimes repeat a kind, and sometimes end in a bad length or an EOL.
_byte = st.sampled_from([0, 1, 1, 2, 4, 8, 10, 3, 5, 0x22, 0xFF])


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(st.lists(_byte, max_size=40), min_size=1, max_size=12))
def test_fast_path_equals_reference_on_any_option_bytes(
    tmp_path: Path, lists: list[list[int]]
) -> None:
    frames = []
    for raw in lists:
        options = bytes(raw) + b"\0" * (-len(raw) % 4)
        frames.append(c.eth(c.ipv4(c.tcp(b"payload", options=options), 6)))
    rows = read_rows(tmp_path, c.pcap(frames))  # asserts both decoders agree on every column
    assert len(rows) == len(lists)

"""The quoted header of ICMP errors (`quoted_*` columns), by both decoding paths."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tracer.pcap.columns import TH_SYN
from tracer.pcap.decode import quoted_fields
from tracer.pcap.reader import read_frames
from tracer.testing.synth import START_NS, Pkt, Sighting, icmp_quote
from tracer.testing.wire import write_pcap

# Every test here runs against the compiled kernels and the numpy path (see conftest.py).
pytestmark = pytest.mark.usefixtures("kernel")

SYN = Pkt("tcp", "10.244.1.7", "10.96.0.104", 40000, 80, seq=3_000_000_001, flags=TH_SYN)
DNS = Pkt("udp", "10.244.1.7", "10.96.0.10", 41234, 53, payload=b"\x12\x34" + b"\0" * 10)


def _frames(tmp_path: Path, packets: list[Pkt], vectorise: bool):  # type: ignore[no-untyped-def]
    path = tmp_path / "p.pcap"
    write_pcap(path, [Sighting(START_NS + i, p, "eth0") for i, p in enumerate(packets)])
    return read_frames(path, vectorise=vectorise)


def test_quoted_columns_of_errors_and_sentinels_elsewhere(tmp_path: Path) -> None:
    errors = [
        Pkt("icmp", "10.244.1.1", "10.244.1.7", payload=icmp_quote(SYN), icmp_type=3, icmp_code=3),
        Pkt("icmp", "10.244.1.1", "10.244.1.7", payload=icmp_quote(DNS), icmp_type=11),
        Pkt("icmp", "10.244.1.7", "10.244.2.9", icmp_type=8, icmp_id=5, icmp_seq=1),
        SYN,
        Pkt(
            "icmpv6",
            "fd00::1",
            "fd00::7",
            payload=icmp_quote(Pkt("tcp", "fd00::7", "fd00::9", 1, 2, seq=77)),
            icmp_type=1,
            icmp_code=4,
        ),
    ]
    for vectorise in (True, False):
        c = _frames(tmp_path, errors, vectorise).columns
        assert c["quoted_proto"].tolist() == [6, 17, -1, -1, 6]
        assert c["quoted_sport"].tolist() == [40000, 41234, -1, -1, 1]
        assert c["quoted_dport"].tolist() == [80, 53, -1, -1, 2]
        assert c["quoted_seq"].tolist() == [3_000_000_001, -1, -1, -1, 77]
        assert c["icmp_id"].tolist()[:3] == [-1, -1, 5]


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=80))
def test_quoted_fields_never_raise(data: bytes) -> None:
    proto, sport, dport, seq = quoted_fields(data)
    assert -1 <= proto <= 255 and -1 <= sport <= 65535 and -1 <= dport <= 65535
    assert -1 <= seq < 1 << 32
    if proto not in (6,):
        assert seq == -1
    assert np.int64(seq) == seq

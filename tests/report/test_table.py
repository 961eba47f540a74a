from __future__ import annotations

import re
from dataclasses import replace

import pytest

from tests.report import golden, sample
from tracer.model import Endpoint, Translation, Tuple5
from tracer.report.table import ms, render_table, translation_text, utc


@pytest.mark.parametrize(
    "name", ["table_clusterip.txt", "table_nodeport.txt", "table_udp_no_reply.txt"]
)
def test_matches_golden(name: str) -> None:
    golden.check(name)


def test_header_says_what_the_request_was() -> None:
    text = render_table(sample.clusterip_path())
    first = text.splitlines()[0]
    assert "10.244.1.7:53700 → 10.96.0.100:80" in first
    assert "backend 10.244.2.9:8080" in first
    assert "HTTP GET /hello -> 200" in text
    assert "2024-05-01 12:00:00.123456 UTC" in text


def test_dnat_row_shows_the_rewrite_and_times() -> None:
    lines = render_table(sample.clusterip_path()).splitlines()
    row = next(line for line in lines if "DNAT 10.96.0.100:80 → 10.244.2.9:8080" in line)
    assert row.split()[:5] == ["3", "node-a", "node-a", "eth0", "out"]
    assert "0.058" in row and "+0.037" in row  # 58 µs after the first hop, 37 µs after cali1


def test_every_hop_is_a_row_in_path_order() -> None:
    text = render_table(sample.clusterip_path())
    fwd, rev = text.split("Return path", 1)
    fwd_rows = [line for line in fwd.splitlines() if line[:3].strip().isdigit()]
    assert [r.split()[1] for r in fwd_rows] == ["client", "node-a", "node-a", "node-b", "server"]
    rev_rows = [line for line in rev.split("Latency")[0].splitlines() if line[:3].strip().isdigit()]
    assert [r.split()[1] for r in rev_rows] == ["server", "node-b", "node-a", "node-a", "client"]


def test_negative_delay_is_flagged_never_bare() -> None:
    text = render_table(sample.nodeport_path())
    delays = text.split("Clocks")[0]  # a clock offset may be negative, a delay may not
    negatives = re.findall(r"-\d+\.\d{3}( !)?", delays)
    assert negatives and all(mark == " !" for mark in negatives)
    assert "negative: the true delay is smaller than the clock offset's error bound" in text


def test_clock_and_warning_sections() -> None:
    text = render_table(sample.clusterip_path())
    assert "node-b against node-a: offset +1.250 ms ± 0.012 ms (14 samples)" in text
    assert "- point server: 2 frames cut by the snaplen" in text


def test_no_reply_is_said_in_words() -> None:
    text = render_table(sample.udp_path_no_reply())
    assert "no reply was seen" in text
    assert "SYN" not in text  # not a TCP request


def test_translation_text_for_each_kind() -> None:
    a, b = Endpoint("10.0.0.1", 1000), Endpoint("10.96.0.1", 443)
    c, d = Endpoint("10.0.0.9", 2000), Endpoint("10.244.0.5", 6443)
    before, after = Tuple5("tcp", a, b), Tuple5("tcp", c, d)
    assert (
        translation_text(Translation("DNAT", before, after))
        == "DNAT 10.96.0.1:443 → 10.244.0.5:6443"
    )
    assert (
        translation_text(Translation("SNAT", before, after)) == "SNAT 10.0.0.1:1000 → 10.0.0.9:2000"
    )
    assert translation_text(Translation("un-DNAT", before, after)).startswith(
        "un-DNAT 10.0.0.1:1000"
    )
    assert translation_text(Translation("un-SNAT", before, after)).startswith(
        "un-SNAT 10.96.0.1:443"
    )
    assert translation_text(Translation("DNAT+SNAT", before, after)).splitlines() == [
        "DNAT 10.96.0.1:443 → 10.244.0.5:6443",
        "SNAT 10.0.0.1:1000 → 10.0.0.9:2000",
    ]
    assert translation_text(None) == ""


def test_time_formats() -> None:
    assert ms(1_234_567) == "1.235"
    assert ms(-9_000, signed=True) == "-0.009 !"
    assert ms(None) == "—"
    assert utc(0) == "1970-01-01 00:00:00.000000 UTC"


def test_round_numbers_keep_three_decimals() -> None:
    path = sample.clusterip_path()
    path = replace(path, latency=replace(path.latency, connect_ns=1_190_000, total_ns=2_000_000))
    text = render_table(path)
    assert "connect  1.190  ms" in text
    assert "total    2.000  ms" in text
    assert "0.250" in text  # the server hop at 250 µs, not "0.25"

from __future__ import annotations

import re
from dataclasses import replace

import pytest

from tests.golden_files import GOLDEN, assert_matches_golden
from tests.report import golden, sample
from tracer.dnslookup import DnsLookup, DnsQuery
from tracer.model import ClockEstimate, Endpoint, Translation, Tuple5
from tracer.report.table import (
    clock_text,
    ms,
    ms_words,
    render_table,
    translation_text,
    utc,
)


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


# --- the DNS lookup, the rule evidence and the notes ---------------------------------------------

MS = 1_000_000


def dns_lookup() -> DnsLookup:
    """ndots:5 for `web`: the first expansion answers A (and AAAA with no records)."""
    base = DnsQuery(
        connection=0,
        point="client",
        protocol="udp",
        client=Endpoint("10.244.1.7", 41000),
        asked=Endpoint("10.96.0.10", 53),
        server=Endpoint("10.244.2.5", 53),
        name="web.default.svc.cluster.local",
        qtype="A",
        start_ns=sample.START_NS - 3 * MS,
        rcode="NOERROR",
        answers=("10.96.0.100",),
        latency_ns=1_250_000,
        server_name="kube-system/coredns-5d78c9869d-x7x2k",
        asked_name="kube-system/kube-dns",
        expansion=True,
    )
    aaaa = replace(
        base, qtype="AAAA", start_ns=base.start_ns + 200_000, answers=(), latency_ns=900_000
    )
    return DnsLookup(
        name="web",
        queries=(base, aaaa),
        address="10.96.0.100",
        answered_by=base,
        elapsed_ns=1_250_000,
        search=("default.svc.cluster.local", "svc.cluster.local", "cluster.local"),
    )


def test_matches_golden_with_dns_and_evidence() -> None:
    evidence = "Rule evidence\n  forward hop 3 (node-a eth0) on node-a: DNAT …\n"
    text = render_table(sample.clusterip_path(), dns=dns_lookup(), evidence=evidence)
    assert_matches_golden(GOLDEN / "table_clusterip_dns.txt", text)


def test_dns_lookup_is_shown_above_the_forward_path() -> None:
    text = render_table(sample.clusterip_path(), dns=dns_lookup())
    dns, rest = text.split("Forward path", 1)
    head = next(line for line in dns.splitlines() if line.startswith("DNS lookup"))
    assert "web → 10.96.0.100 in 1.250 ms" in head
    assert "2 queries, 2 of them search-list expansions" in head
    assert "10.96.0.10:53 (kube-system/kube-dns)" in dns
    assert "answered by 10.244.2.5:53 (kube-system/coredns-5d78c9869d-x7x2k)" in dns
    rows = [line.split() for line in dns.splitlines() if line.strip()[:1].isdigit()]
    assert rows[0][:7] == [
        "1",
        "0.000",
        "web.default.svc.cluster.local",
        "*",
        "A",
        "NOERROR",
        "10.96.0.100",
    ]
    assert rows[1][:5] == ["2", "0.200", "web.default.svc.cluster.local", "AAAA", "NOERROR"]
    assert " ".join(rows[1][5:7]) == "(no records)"
    assert rows[0][-1] == "1.250" and rows[1][-1] == "0.900"
    assert "DNS lookup" not in rest


def test_unresolved_lookup_and_several_servers() -> None:
    lookup = dns_lookup()
    nx = tuple(
        replace(q, rcode="NXDOMAIN", answers=(), server=Endpoint(f"10.244.2.{i}", 53))
        for i, q in enumerate(lookup.queries, 5)
    )
    lost = replace(nx[1], rcode=None, latency_ns=None)
    text = render_table(
        sample.clusterip_path(),
        dns=DnsLookup(name="web", queries=(nx[0], lost), search=lookup.search),
    )
    assert "DNS lookup  web: not resolved (NXDOMAIN, no reply)" in text
    assert "asked → answered by" in text  # one server per row when they differ
    assert "10.96.0.10:53 → 10.244.2.6:53" in text
    assert "no reply" in text.split("Forward path")[0].splitlines()[-3]


def test_evidence_section_comes_before_the_warnings() -> None:
    text = render_table(sample.clusterip_path(), evidence="Rule evidence\n  conntrack: tcp 6 …\n")
    assert text.index("Clocks") < text.index("Rule evidence") < text.index("Warnings")
    assert render_table(sample.clusterip_path(), evidence="") == render_table(
        sample.clusterip_path()
    )


def test_capture_notes_are_quiet_unless_verbose() -> None:
    path = sample.clusterip_path()
    noisy = replace(path, notes=("point node-a: 7 frames were not IP",))
    quiet = render_table(noisy)
    assert "frames were not IP" not in quiet and "Notes" not in quiet
    assert "- point server: 2 frames cut by the snaplen" in quiet  # a real warning stays
    loud = render_table(noisy, verbose=True)
    assert "Notes\n  - point node-a: 7 frames were not IP" in loud
    assert "frames were not IP" not in loud.split("Notes", 1)[0]


def test_warnings_speak_milliseconds() -> None:
    path = replace(
        sample.clusterip_path(),
        warnings=("clocks a and b: the matched packets disagree by 246000 ns (drift)",),
    )
    assert "disagree by 0.246 ms (drift)" in render_table(path)
    assert ms_words("first -62000 ns, median -24000 ns") == "first -0.062 ms, median -0.024 ms"
    assert ms_words("3 frames, 10.5 ns") == "3 frames, 10.5 ns"  # only whole nanoseconds


def test_unknown_clock_bound_is_said_not_printed_negative() -> None:
    c = ClockEstimate("node2", "node1", 15_000, -1, 4)
    assert (
        clock_text(c) == "node2 against node1: offset +0.015 ms (error bound unknown) (4 samples)"
    )

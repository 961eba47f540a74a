from __future__ import annotations

from tests.report import golden, sample
from tracer.report.listing import render_list


def test_matches_golden() -> None:
    golden.check("list.txt")


def test_one_line_per_connection() -> None:
    lines = render_list(sample.connections(), sample.LIST_SUMMARIES).splitlines()
    rows = lines[2:]  # header and rule
    assert len(rows) == 3
    assert rows[0].split()[:2] == ["0", "tcp"]
    assert "10.244.1.7:53700 → 10.96.0.100:80" in rows[0]
    assert "10.244.2.9:8080" in rows[0]
    assert "4: client, node-a, node-b, server" in rows[0]
    assert "6: client, node-a, coredns-1, coredns-2, +2" in rows[1]
    assert rows[1].endswith("DNS A web.default.svc.cluster.local -> 10.96.0.100 (NOERROR)")
    assert rows[2].rstrip().endswith("1: client")

"""The HTML report in a real browser (headless chromium): what a person opening it sees.

The pages are the project's own recorded runs (pcaps/) written by `pathtrace analyze --html`, and
a generated listing of 10,000 connections. The DOM is read after the page's script ran; the
screenshots are taken at a fixed size.
"""

from __future__ import annotations

import re
import struct
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.report.html import browser
from tests.report.html.reports import listing_doc, ten_thousand_report
from tracer.cli import cli
from tracer.report.html import render_html

PCAPS = Path(__file__).resolve().parents[3] / "pcaps"

pytestmark = pytest.mark.skipif(
    browser.find() is None, reason="chromium is not installed (scripts/setup --dev installs it)"
)


def _analyze(run: str, out: Path) -> Path:
    page = out / f"{run}.html"
    result = CliRunner().invoke(cli, ["analyze", str(PCAPS / run), "--html", str(page)])
    assert result.exit_code == 0, result.output
    return page


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    w, h = struct.unpack(">II", data[16:24])
    return w, h


def test_clusterip_remote_report_shows_every_part(tmp_path: Path) -> None:
    dom = browser.dump_dom(_analyze("clusterip-remote", tmp_path))
    for section in ("ladder", "waterfall", "hops", "dns", "clocks", "evidence", "connections"):
        assert f'id="{section}"' in dom, section
    assert 'class="badge ok"' in dom  # answered
    assert "10.96.0.101:80 (default/web-remote)" in dom  # the Service, named
    assert "DNAT 10.96.0.101:80 → 10.244.2.3:8080" in dom  # the rewrite, marked
    assert "rewritten here (NAT)" in dom  # the ladder's legend
    assert "server web-b: its own time" in dom  # the waterfall's server bar
    assert "KUBE-SEP-" in dom  # the rule evidence, collapsed in <details>
    # The script ran: one table row per connection (the DNS lookup and the request).
    assert len(re.findall(r'<tr [^>]*data-i="\d+"', dom)) == 2
    assert "2 of 2 connections" in dom


def test_failing_run_shows_the_break(tmp_path: Path) -> None:
    dom = browser.dump_dom(_analyze("stale-endpoint", tmp_path))
    assert 'id="break"' in dom
    assert "The request went no further than node2 flannel.1" in dom
    assert "an ICMP error from 10.244.2.0 came back" in dom
    assert "seen no further than node2 flannel.1" in dom  # marked on the ladder too
    assert 'class="badge bad"' in dom


def test_ten_thousand_connections_filter_and_click_through(tmp_path: Path) -> None:
    doc = listing_doc(10_000)  # through the listing's own code: outcomes, summary, rows
    rows = doc["connections"]
    report = ten_thousand_report(rows)
    report = replace(report, listing=doc)
    page = tmp_path / "busy.html"
    page.write_text(render_html(report), encoding="utf-8")
    dom = browser.dump_dom(page)
    assert "10000 of 10000 connections" in dom
    assert len(re.findall(r'<tr [^>]*data-i="\d+"', dom)) == 300  # the first rows only
    for by in ("backend", "service", "node"):
        assert f'data-by="{by}"' in dom  # the listing's percentiles
    unanswered = sum(r["outcome"] == "unanswered" for r in rows)
    assert 0 < unanswered < 10_000
    dom = browser.dump_dom(page, "#filter=outcome%3Dunanswered")
    assert f"{unanswered} of 10000 connections" in dom
    assert set(re.findall(r'<td class="oc oc-(\w+)">', dom)) == {"unanswered"}
    # A failed connection precomputed: clicking through (a #conn link) shows its hops.
    failed = next(i for i in sorted(report.details) if rows[i]["outcome"] != "ok")
    dom = browser.dump_dom(page, f"#conn-{failed}")
    detail = dom[dom.index('id="detail"') :]
    assert f"Connection #{failed}" in detail[:400]
    assert "<h3>Forward</h3>" in detail
    # One that is not: the report says how to trace it.
    other = next(i for i in range(10_000) if i not in report.details)
    dom = browser.dump_dom(page, f"#conn-{other}")
    assert f"--request {other}" in dom


def test_screenshot_at_a_fixed_size(tmp_path: Path) -> None:
    page = _analyze("clusterip-remote", tmp_path)
    shot = tmp_path / "report.png"
    browser.screenshot(page, shot, 1280, 1600)
    assert _png_size(shot) == (1280, 1600)
    # Not a blank page: a rendered report compresses far worse than an empty one.
    assert shot.stat().st_size > 60_000


def test_prints(tmp_path: Path) -> None:
    page = _analyze("stale-endpoint", tmp_path)
    pdf = tmp_path / "report.pdf"
    browser.print_pdf(page, pdf)
    data = pdf.read_bytes()
    assert data.startswith(b"%PDF")
    pages = len(re.findall(rb"/Type\s*/Page\b", data))
    assert 1 <= pages <= 12, pages  # the whole report, on a handful of sheets

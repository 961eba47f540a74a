"""The document: the traced request's sections, the break, self-containment and size."""

from __future__ import annotations

import re

from tests.report import sample
from tests.report.html.reports import parse_page, sample_report, ten_thousand_report
from tracer.report.html import Report, render_html


def test_sections_of_the_traced_request() -> None:
    page = parse_page(render_html(sample_report()))
    for section in ("findings", "ladder", "waterfall", "hops", "clocks", "warnings", "connections"):
        assert section in page.ids, section
    assert "break" not in page.ids  # this request was answered
    text = render_html(sample_report())
    assert "DNAT 10.96.0.100:80 → 10.244.2.9:8080" in text
    assert "10.96.0.100:80 (default/web)" in text  # the Service named in the header
    assert '<span class="badge ok">ok</span> by 10.244.2.9 at server' in text
    assert 'data-by="backend"' in text  # the listing's own percentiles, without a script


def test_a_request_that_went_no_further_says_where() -> None:
    text = render_html(Report(source="x", path=sample.udp_path_no_reply()))
    page = parse_page(text)
    assert "break" in page.ids
    assert "The request went no further than client" in text
    assert "no reply was seen at any capture point" in text


def test_self_contained_nothing_fetched() -> None:
    text = render_html(sample_report())
    for tag, attrs in parse_page(text).tags:
        assert tag not in ("link", "img", "iframe", "object", "embed"), tag
        assert "src" not in attrs, (tag, attrs)
        href = attrs.get("href") or ""
        assert not href or href.startswith("#"), href
    assert "@import" not in text
    assert not re.search(r"url\((?!#)", text)
    # The only absolute URL is the SVG namespace name, which is never fetched.
    assert set(re.findall(r"https?://[^\s\"'<)]+", text)) <= {"http://www.w3.org/2000/svg"}


def test_ten_thousand_connections_stay_small() -> None:
    size = len(render_html(ten_thousand_report()).encode("utf-8"))
    assert size < 480 * 1024, f"{size / 1024:.0f} KB"

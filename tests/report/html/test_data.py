"""The embedded data: golden, what the page carries, and safe inside its script element."""

from __future__ import annotations

import json

from tests.report import golden
from tests.report.html.reports import listing_doc, parse_page, sample_report
from tracer.report.html import Report, render_html, report_data


def test_embedded_data_matches_golden() -> None:
    golden.check("html_data.json")


def test_embedded_data_is_what_the_page_carries() -> None:
    report = sample_report()
    page = parse_page(render_html(report))
    assert json.loads(page.data["pathtrace-data"]) == json.loads(
        json.dumps(report_data(report), ensure_ascii=False)
    )


def test_script_end_inside_data_cannot_close_the_script() -> None:
    listing = listing_doc()
    listing["connections"][0]["summary"] = "HTTP GET /</script><b>x"
    text = render_html(Report(source="x", listing=listing))
    assert text.count("</script>") == 2  # the data element and the script, nothing else
    data = parse_page(text).data["pathtrace-data"]
    assert "HTTP GET /</script><b>x" in json.loads(data)["list"]["strings"]

"""The whole report as one self-contained HTML document: CSS and script inline, nothing fetched.

Pure: a `Report` in, one string out (the two asset files are read from the package).
"""

from __future__ import annotations

from functools import cache
from importlib import resources

from tracer.report.html.connections import connections_section
from tracer.report.html.data import SCHEMA, report_data, script_json
from tracer.report.html.page import Report, esc
from tracer.report.html.request import findings_section, request_sections
from tracer.report.table import ARROW


@cache
def _asset(name: str) -> str:
    return resources.files("tracer.report").joinpath("assets", name).read_text("utf-8")


def render_html(report: Report) -> str:
    """The whole report as one HTML document."""
    path = report.path
    if report.title:
        title = report.title
    elif path is not None:
        r = path.request
        title = f"{r.protocol} {r.client} {ARROW} {r.destination}"
    else:
        title = report.source
    nav = []
    if path is not None:
        nav += [("ladder", "Path"), ("waterfall", "Latency"), ("hops", "Hops")]
        if report.journeys:
            nav.append(("exchange", "Packets"))
        if report.dns is not None and report.dns.queries:
            nav.append(("dns", "DNS"))
        if report.evidence is not None and report.evidence.rewrites:
            nav.append(("evidence", "Rules"))
    if report.findings:
        nav.insert(0, ("findings", "Findings"))
    if report.listing is not None:
        nav.append(("connections", "Connections"))
    body: list[str] = []
    if path is not None:
        body += request_sections(report, path)
    else:
        body += findings_section(report.findings)
    body += connections_section(report)
    version = f" {report.version}" if report.version else ""
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f'<meta name="generator" content="pathtrace{esc(version)}">',
        f"<title>pathtrace: {esc(title)}</title>",
        f"<style>{_asset('report.css')}</style>",
        "</head><body>",
        f'<div class="top"><span class="brand">pathtrace</span> <span class="src">'
        f"{esc(report.source)}</span>",
        "<nav>" + " ".join(f'<a href="#{k}">{esc(v)}</a>' for k, v in nav) + "</nav></div>",
        "<main>",
        *body,
        "</main>",
        f"<footer>pathtrace{esc(version)} · {esc(report.source)} · data: the"
        f" <code>pathtrace-data</code> element ({SCHEMA})</footer>",
        f'<script type="application/json" id="pathtrace-data">{script_json(report_data(report))}'
        "</script>",
        f"<script>{_asset('report.js')}</script>",
        "</body></html>",
    ]
    return "\n".join(out) + "\n"

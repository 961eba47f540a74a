"""One self-contained HTML file per run: the traced request and, for a busy run, every connection.

The report opens anywhere, offline: CSS, the ladder (SVG), the latency waterfall (SVG) and a small
script are inline; nothing is fetched. Everything about the traced request is plain HTML, readable
with scripts off and when printed: a header (request, outcome, total, Service and backend), the
break when the request went no further, `diagnose` findings, the ladder with its legend, the
waterfall of one round trip (each segment, the server's own time, the clock bound where two
clocks meet), the hop tables, the DNS lookup, the clocks, the rule evidence (collapsed) and the
warnings. The many-connection view (a scatter of start vs. total latency coloured by outcome,
outcome counts, percentiles per backend, Service and node, a sortable and filterable table, and a
click-through to a connection's path) is drawn by the inline script from the embedded JSON
(`report_data`, schema `pathtrace-html/v1`), which holds the listing column by column with repeated
strings numbered once, so that 10,000 connections stay a few hundred KB.

Pure: data in, one string out (the two asset files are read from the package). Nothing here
decides an outcome or a percentile the core should compute: rows come as `pathtrace-list/v1`
rows, paths as `Path`s.
"""

from __future__ import annotations

from tracer.report.html.connections import (
    DETAILS_CAP,
    LIST_CAP,
    details_to_precompute,
    rows_to_embed,
)
from tracer.report.html.data import SCHEMA, list_data, path_data, report_data
from tracer.report.html.document import render_html
from tracer.report.html.page import Report
from tracer.report.html.request import exchange_rows
from tracer.report.html.waterfall import waterfall_bars

__all__ = [
    "DETAILS_CAP",
    "LIST_CAP",
    "SCHEMA",
    "Report",
    "details_to_precompute",
    "exchange_rows",
    "list_data",
    "path_data",
    "render_html",
    "report_data",
    "rows_to_embed",
    "waterfall_bars",
]

"""The golden outputs: which fixture renders into which file under tests/golden/.

Regenerate after an intended change with `python -m tests.report.regen` (or run the tests with
PATHTRACE_REGEN_GOLDEN=1), then read the diff: the golden files are the reviewed output.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from tests.golden_files import GOLDEN, assert_matches_golden
from tests.report import sample
from tracer.report.json import render_json
from tracer.report.listing import render_list, render_list_json
from tracer.report.table import render_table

CASES: dict[str, Callable[[], str]] = {
    "table_clusterip.txt": lambda: render_table(sample.clusterip_path()),
    "table_nodeport.txt": lambda: render_table(sample.nodeport_path()),
    "table_udp_no_reply.txt": lambda: render_table(sample.udp_path_no_reply()),
    "path_clusterip.json": lambda: render_json(sample.clusterip_path()),
    "path_nodeport.json": lambda: render_json(sample.nodeport_path()),
    "list.txt": lambda: render_list(sample.listing()),
    "list.json": lambda: render_list_json(sample.listing()),
    "html_data.json": lambda: _html_data(),
}


def _html_data() -> str:
    from tests.report.html.reports import sample_report
    from tracer.report.html import report_data

    return json.dumps(report_data(sample_report()), indent=1, ensure_ascii=False) + "\n"


def check(name: str) -> None:
    """Compare a case with its golden file, or rewrite the file when regeneration is asked for."""
    assert_matches_golden(GOLDEN / name, CASES[name]())

"""The listing's renderings: the golden table and document, and the JSON contract's fields."""

from __future__ import annotations

import csv
import io
import json

from tests.report import golden, sample
from tracer.report.listing import (
    CSV_FIELDS,
    LIST_SCHEMA,
    render_list,
    render_list_csv,
    render_list_json,
    render_list_jsonl,
)

ROW_FIELDS = {
    "index",
    "protocol",
    "client",
    "destination",
    "service",
    "backend",
    "points",
    "outcome",
    "outcome_by",
    "last_point",
    "start_ns",
    "connect_ns",
    "server_ns",
    "total_ns",
    "retransmissions",
    "slowest_segment",
    "http_status",
    "dns_rcode",
    "summary",
}


def test_matches_golden() -> None:
    golden.check("list.txt")
    golden.check("list.json")


def test_summary_first_then_one_line_per_connection() -> None:
    text = render_list(sample.listing())
    assert text.startswith("4 connections: 1 ok, 1 unanswered, 2 incomplete")
    rows = text.split("\n\n")[-1].splitlines()[2:]
    assert [r.split()[0] for r in rows] == ["0", "1", "2", "3"]
    assert rows[0].split()[7:9] == ["ok", "server"]
    assert "10.64.0.1:32769 → 10.96.0.100:80" in rows[1] and "unanswered" in rows[1]


def test_json_contract() -> None:
    doc = json.loads(render_list_json(sample.listing()))
    assert doc["schema"] == LIST_SCHEMA == "pathtrace-list/v1"
    assert doc["summary"]["outcomes"] == {
        "ok": 1,
        "reset": 0,
        "rejected": 0,
        "unanswered": 1,
        "incomplete": 2,
    }
    assert doc["summary"]["by_backend"][0]["name"] == "10.244.2.9:8080"
    rows = doc["connections"]
    assert all(set(r) == ROW_FIELDS for r in rows)
    ok, unanswered = rows[0], rows[1]
    assert ok["outcome_by"] == {"address": "10.244.2.9", "point": "server", "node": "node-b"}
    assert ok["points"] == ["client", "node-a", "server"]
    assert (ok["connect_ns"], ok["server_ns"], ok["total_ns"]) == (350_000, 2_185_000, 2_515_000)
    assert unanswered["outcome"] == "unanswered" and unanswered["outcome_by"] is None
    assert unanswered["total_ns"] is None and unanswered["last_point"] == "server"


def test_jsonl_and_csv_hold_the_chosen_rows_in_order() -> None:
    listing = sample.listing(fmt_rows=(3, 0))
    lines = render_list_jsonl(listing).splitlines()
    assert [json.loads(x)["index"] for x in lines] == [3, 0]
    table = list(csv.reader(io.StringIO(render_list_csv(listing))))
    assert tuple(table[0]) == CSV_FIELDS
    assert [r[0] for r in table[1:]] == ["3", "0"]
    assert table[2][CSV_FIELDS.index("outcome")] == "ok"
    assert table[2][CSV_FIELDS.index("total_ns")] == "2515000"

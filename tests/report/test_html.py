"""The HTML report: its embedded data (golden), its sections, self-containment and size."""

from __future__ import annotations

import json
import random
import re
from html.parser import HTMLParser
from typing import Any

from tests.report import golden, sample
from tracer.report.html import (
    DETAILS_CAP,
    Report,
    details_to_precompute,
    render_html,
    report_data,
    rows_to_embed,
    waterfall_bars,
)
from tracer.report.listing import LIST_SCHEMA, rows_json, summary_json


def listing_doc(n: int = 4) -> dict[str, Any]:
    """A pathtrace-list/v1 document as `analyze --list --format json` writes it."""
    listing = sample.listing(n=n)
    return {
        "schema": LIST_SCHEMA,
        "summary": summary_json(listing),
        "connections": list(rows_json(listing)),
    }


def sample_report() -> Report:
    path = sample.clusterip_path()
    listing = listing_doc()
    return Report(
        source="runs/sample",
        path=path,
        listing=listing,
        details={0: path, 1: sample.udp_path_no_reply()},
        details_note="every connection's path is in this file",
        row=listing["connections"][0],
        names={"10.96.0.100": "default/web", "10.244.2.9": "web-0"},
        findings=(
            {
                "severity": "warning",
                "step": 6,
                "title": "one connection was reset",
                "evidence": ["server frame 7: RST"],
                "next": "look at web-0's log",
            },
        ),
        version="0.0.0",
    )


class _Ids(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.data: dict[str, str] = {}
        self._in: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        self.tags.append((tag, a))
        if a.get("id"):
            self.ids.add(str(a["id"]))
        self._in = a.get("id") if tag == "script" else None

    def handle_data(self, data: str) -> None:
        if self._in:
            self.data[self._in] = self.data.get(self._in, "") + data


def _parse(text: str) -> _Ids:
    p = _Ids()
    p.feed(text)
    return p


def test_embedded_data_matches_golden() -> None:
    golden.check("html_data.json")


def test_embedded_data_is_what_the_page_carries() -> None:
    report = sample_report()
    page = _parse(render_html(report))
    assert json.loads(page.data["pathtrace-data"]) == json.loads(
        json.dumps(report_data(report), ensure_ascii=False)
    )


def test_sections_of_the_traced_request() -> None:
    page = _parse(render_html(sample_report()))
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
    page = _parse(text)
    assert "break" in page.ids
    assert "The request went no further than client" in text
    assert "no reply was seen at any capture point" in text


def test_self_contained_nothing_fetched() -> None:
    text = render_html(sample_report())
    for tag, attrs in _parse(text).tags:
        assert tag not in ("link", "img", "iframe", "object", "embed"), tag
        assert "src" not in attrs, (tag, attrs)
        href = attrs.get("href") or ""
        assert not href or href.startswith("#"), href
    assert "@import" not in text
    assert not re.search(r"url\((?!#)", text)
    # The only absolute URL is the SVG namespace name, which is never fetched.
    assert set(re.findall(r"https?://[^\s\"'<)]+", text)) <= {"http://www.w3.org/2000/svg"}


def test_script_end_inside_data_cannot_close_the_script() -> None:
    listing = listing_doc()
    listing["connections"][0]["summary"] = "HTTP GET /</script><b>x"
    text = render_html(Report(source="x", listing=listing))
    assert text.count("</script>") == 2  # the data element and the script, nothing else
    data = _parse(text).data["pathtrace-data"]
    assert "HTTP GET /</script><b>x" in json.loads(data)["list"]["strings"]


def test_waterfall_is_one_round_trip() -> None:
    path = sample.clusterip_path()
    bars = waterfall_bars(path)
    labels = [b.label for b in bars]
    assert labels[0] == "client → node-a"
    server = [b for b in bars if b.kind == "server"]
    assert [b.ns for b in server] == [path.latency.server_ns]
    out = [b for b in bars if not b.kind.startswith("back") and b.kind != "server"]
    # The way out adds up to the first packet's arrival at the server.
    assert sum(b.ns for b in out) == path.forward[-1].t_ns - path.forward[0].t_ns
    back = [b for b in bars if b.kind.startswith("back")]
    assert sum(b.ns for b in back) == path.reverse[-1].t_ns - path.reverse[0].t_ns


def test_details_few_connections_all() -> None:
    rows = listing_doc()["connections"]
    chosen, note = details_to_precompute(rows)
    assert chosen == [0, 1, 2, 3]
    assert "every connection" in note


def _many(n: int, seed: int = 7) -> list[dict[str, Any]]:
    """n rows in the listing's shape, varied the way a busy Service varies them (the size
    bound's worst case): 90 clients with random ports, 6 backends on 3 nodes, 12 URLs, a few
    per cent failed of every kind, latencies spread over three orders of magnitude."""
    rng = random.Random(seed)
    rows = []
    t0 = 1_714_564_800_000_000_000
    for i in range(n):
        outcome = rng.choices(
            ["ok", "reset", "rejected", "unanswered", "incomplete"], [92, 3, 2, 2, 1]
        )[0]
        b = rng.randrange(6)
        total = int(rng.lognormvariate(14, 1.2)) if outcome == "ok" else None
        rows.append(
            {
                "index": i,
                "protocol": "tcp",
                "client": f"10.244.{1 + rng.randrange(3)}.{2 + rng.randrange(30)}:{rng.randrange(32768, 60999)}",
                "destination": "10.96.0.100:80",
                "service": "default/web",
                "backend": f"10.244.{1 + b % 3}.{10 + b}:8080",
                "node": f"node{1 + b % 3}",
                "points": ["client", f"node{1 + b % 3}", "server"],
                "outcome": outcome,
                "outcome_by": None
                if outcome == "unanswered"
                else f"10.244.{1 + b % 3}.{10 + b}:8080",
                "last_point": "server",
                "start_ns": t0 + i * 3_000_000 + rng.randrange(1_000_000),
                "connect_ns": total // 3 if total else None,
                "server_ns": total // 2 if total else None,
                "total_ns": total,
                "retransmissions": 0 if outcome == "ok" else rng.randrange(4),
                "slowest_segment": {"from": "client", "to": f"node{1 + b % 3}", "delay_ns": 20_000},
                "http_status": 200 if outcome == "ok" else None,
                "dns_rcode": None,
                "summary": f"HTTP GET /api/v1/items/{rng.randrange(12)} -> {200 if outcome == 'ok' else 0}",
            }
        )
    return rows


def test_details_many_connections_every_failure_kind_then_the_slowest() -> None:
    rows = _many(2000)
    chosen, note = details_to_precompute(rows)
    assert len(chosen) == DETAILS_CAP == len(set(chosen))
    by = {r["index"]: r for r in rows}
    kinds = {by[i]["outcome"] for i in chosen}
    assert kinds == {"ok", "reset", "rejected", "unanswered", "incomplete"}
    ok = [by[i]["total_ns"] for i in chosen if by[i]["outcome"] == "ok"]
    slowest = sorted((r["total_ns"] for r in rows if r["outcome"] == "ok"), reverse=True)
    assert sorted(ok, reverse=True) == slowest[: len(ok)]
    assert f"at most {DETAILS_CAP}" in note and "failed" in note and "slowest" in note


def ten_thousand_report(rows: list[dict[str, Any]] | None = None) -> Report:
    """A report of 10,000 connections (random ones unless `rows` are given), with the paths of
    the failed and the slowest ones."""
    rows = _many(10_000) if rows is None else rows
    listing = {"schema": LIST_SCHEMA, "summary": {}, "connections": rows}
    chosen, note = details_to_precompute(rows)
    path = sample.clusterip_path()
    return Report(
        source="runs/busy",
        path=path,
        listing=listing,
        details={i: path for i in chosen},
        details_note=note,
        row=rows[0],
    )


def test_ten_thousand_connections_stay_small() -> None:
    size = len(render_html(ten_thousand_report()).encode("utf-8"))
    assert size < 480 * 1024, f"{size / 1024:.0f} KB"


def test_a_capped_listing_keeps_every_failure_and_says_so() -> None:
    rows = _many(3000)
    kept, note = rows_to_embed(rows, cap=1000)
    failed = [r for r in rows if r["outcome"] != "ok"]
    assert len(kept) == 1000
    assert all(r in kept for r in failed)
    ok = [r["index"] for r in kept if r["outcome"] == "ok"]
    assert ok == [r["index"] for r in rows if r["outcome"] == "ok"][: 1000 - len(failed)]
    assert [r["index"] for r in kept] == sorted(r["index"] for r in kept)  # listing order
    assert "1,000 of the 3,000 connections" in note
    assert rows_to_embed(rows[:10], cap=1000) == (rows[:10], "")


def test_waterfall_shows_an_l7_proxy_s_own_time() -> None:
    from tests.correlate.test_legs import stitched_path as _path

    bars = waterfall_bars(_path())
    proxy = [(b.label, b.ns, b.kind) for b in bars if b.kind.endswith("proxy")]
    assert proxy == [
        ("L7 proxy proxy: its own time", 800, "proxy"),
        ("L7 proxy proxy: its own time", 300, "back-proxy"),
    ]

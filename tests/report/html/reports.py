"""Reports the HTML tests render: a small traced request with its listing, and 10,000 connections
varied the way a busy Service varies them; and a parser that keeps a page's ids, tags and data."""

from __future__ import annotations

import random
from html.parser import HTMLParser
from typing import Any

from tests.report import sample
from tracer.report.html import Report, details_to_precompute
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


class Page(HTMLParser):
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


def parse_page(text: str) -> Page:
    p = Page()
    p.feed(text)
    return p


def many_rows(n: int, seed: int = 7) -> list[dict[str, Any]]:
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


def ten_thousand_report(rows: list[dict[str, Any]] | None = None) -> Report:
    """A report of 10,000 connections (random ones unless `rows` are given), with the paths of
    the failed and the slowest ones."""
    rows = many_rows(10_000) if rows is None else rows
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

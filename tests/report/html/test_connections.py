"""Which connections and paths one file holds."""

from __future__ import annotations

from tests.report.html.reports import listing_doc, many_rows
from tracer.report.html import DETAILS_CAP, details_to_precompute, rows_to_embed


def test_details_few_connections_all() -> None:
    rows = listing_doc()["connections"]
    chosen, note = details_to_precompute(rows)
    assert chosen == [0, 1, 2, 3]
    assert "every connection" in note


def test_details_many_connections_every_failure_kind_then_the_slowest() -> None:
    rows = many_rows(2000)
    chosen, note = details_to_precompute(rows)
    assert len(chosen) == DETAILS_CAP == len(set(chosen))
    by = {r["index"]: r for r in rows}
    kinds = {by[i]["outcome"] for i in chosen}
    assert kinds == {"ok", "reset", "rejected", "unanswered", "incomplete"}
    ok = [by[i]["total_ns"] for i in chosen if by[i]["outcome"] == "ok"]
    slowest = sorted((r["total_ns"] for r in rows if r["outcome"] == "ok"), reverse=True)
    assert sorted(ok, reverse=True) == slowest[: len(ok)]
    assert f"at most {DETAILS_CAP}" in note and "failed" in note and "slowest" in note


def test_a_capped_listing_keeps_every_failure_and_says_so() -> None:
    rows = many_rows(3000)
    kept, note = rows_to_embed(rows, cap=1000)
    failed = [r for r in rows if r["outcome"] != "ok"]
    assert len(kept) == 1000
    assert all(r in kept for r in failed)
    ok = [r["index"] for r in kept if r["outcome"] == "ok"]
    assert ok == [r["index"] for r in rows if r["outcome"] == "ok"][: 1000 - len(failed)]
    assert [r["index"] for r in kept] == sorted(r["index"] for r in kept)  # listing order
    assert "1,000 of the 3,000 connections" in note
    assert rows_to_embed(rows[:10], cap=1000) == (rows[:10], "")

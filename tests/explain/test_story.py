"""`explain RUN` stories: golden narratives for every recorded run, and the facts they must say."""

from __future__ import annotations

import re

import pytest

from tests.explain.runs import SCENARIOS, story_input, truth
from tracer.explain.story import tell_story
from tracer.report.story import render_story


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_story_names_the_backend_and_outcome_the_lab_saw(scenario: str) -> None:
    t = truth(scenario)
    story = tell_story(story_input(scenario))
    text = render_story(story)
    if t["backend"] and t["outcome"] != "refused":
        assert t["backend"] in text
    for x in t["expected_translations"]:
        if x["kind"] == "DNAT":
            told = (
                f"DNAT by kube-proxy on {x['node']}",
                f"DNAT+SNAT by kube-proxy on {x['node']}",
                f"kube-proxy on {x['node']} DNATs the query",
            )
            assert any(words in text for words in told)
    broken = any(s.broken for s in story.steps)
    assert broken == (t["outcome"] != "http-200")
    # Every evidence line names a point and a frame (1-based) or a rule/conntrack source.
    for step in story.steps:
        for e in step.evidence:
            assert re.match(r"^(\S+( \S+)? frame \d+|rules |conntrack on |  \[)", e), e


def test_access_paths_are_told_in_their_order() -> None:
    assert tell_story(story_input("clusterip")).access == "clusterip"
    assert tell_story(story_input("nodeport")).access == "nodeport"
    assert tell_story(story_input("ingress")).access == "ingress"
    titles = [s.title for s in tell_story(story_input("clusterip")).steps]
    assert titles[0] == "DNS lookup"
    assert titles.index("DNAT by kube-proxy on node1") < titles.index(
        "The reply goes back the same way"
    )


def test_dns_story_shows_search_expansions_and_nxdomain() -> None:
    story = tell_story(story_input("dns-nxdomain"))
    text = render_story(story)
    for name in ("wbe.default.svc.cluster.local", "wbe.svc.cluster.local", "wbe.cluster.local"):
        assert name in text
    assert text.count("NXDOMAIN") >= 8  # A and AAAA for every expansion
    assert "no request was sent" in story.outcome


def test_reject_story_says_why() -> None:
    story = tell_story(story_input("no-endpoints"))
    assert "kube-proxy has no endpoints for default/web-empty" in story.outcome
    assert "ICMP port unreachable" in story.outcome


def test_stale_endpoint_story_points_at_the_endpoint() -> None:
    story = tell_story(story_input("stale-endpoint"))
    assert "10.244.2.9:8080" in story.outcome
    assert "SYN_SENT [UNREPLIED]" in render_story(story)

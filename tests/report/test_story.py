"""Rendering `explain` stories: the golden narrative of every recorded run, and the JSON form."""

from __future__ import annotations

import pytest

from tests.explain.runs import SCENARIOS, story_input
from tests.golden_files import GOLDEN, assert_matches_golden
from tracer.explain.story import tell_story
from tracer.report.story import render_story, story_json


def _story_text(scenario: str) -> str:
    return render_story(tell_story(story_input(scenario)), run=f"pcaps/{scenario}")


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_story_matches_golden(scenario: str) -> None:
    text = _story_text(scenario)
    assert_matches_golden(GOLDEN / f"explain_{scenario}.txt", text)


def test_story_json_has_steps_and_outcome() -> None:
    js = story_json(tell_story(story_input("nodeport")))
    assert js["schema"] == "pathtrace-story/v1"
    assert js["access"] == "nodeport"
    assert any("masqueraded to 10.244.1.0" in line for s in js["steps"] for line in s["lines"])

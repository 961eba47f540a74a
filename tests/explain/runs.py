"""The recorded lab runs under pcaps/, loaded once per test session (each takes about a second)."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from tracer.explain.story import StoryInput
from tracer.inputs import load_run
from tracer.trace import open_run
from tracer.trace import story_input as build_story_input

PCAPS = Path(__file__).resolve().parents[2] / "pcaps"
SCENARIOS = sorted(p.name for p in PCAPS.iterdir() if (p / "manifest.json").is_file())


@cache
def story_input(scenario: str) -> StoryInput:
    return build_story_input(open_run(load_run(PCAPS / scenario)))


def truth(scenario: str) -> dict[str, Any]:
    """The lab's ground truth for a run (from its configuration and the kernel)."""
    data: dict[str, Any] = json.loads((PCAPS / scenario / "manifest.json").read_text())
    return dict(data["extra"]["lab"])

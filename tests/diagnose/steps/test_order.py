"""The steps' findings in order: the cause first, the symptoms it explains after it."""

from __future__ import annotations

from tracer.diagnose.model import Finding
from tracer.diagnose.steps import order


def test_order_puts_root_causes_before_symptoms() -> None:
    symptom = Finding("error", 2, "symptom", weight=50)
    cause = Finding("error", 4, "cause", weight=100)
    note = Finding("info", 1, "note")
    slow = Finding("warning", 6, "slow", weight=80)
    assert [f.title for f in order([note, symptom, slow, cause])] == [
        "cause",
        "symptom",
        "slow",
        "note",
    ]

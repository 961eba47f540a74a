"""Render an `explain` story (tracer.explain.story builds it) as text for people or as JSON
(schema pathtrace-story/v1). Pure: a Story in, a string or a dict out."""

from __future__ import annotations

from typing import Any

from tracer.explain.story import Story

_ACCESS_WORDS = {
    "clusterip": "a pod calls a Service by name (ClusterIP)",
    "nodeport": "a client outside the cluster calls a NodePort",
    "ingress": "a client outside the cluster goes through an Ingress controller",
    "dns": "a DNS lookup only",
    "direct": "a direct connection (no Service rewrite seen)",
    "mesh": "a meshed pod calls a Service through its sidecar (REDIRECT to the proxy)",
    "socket-lb": "a pod calls a Service translated in its own socket (eBPF socket load-balancer)",
}


def render_story(story: Story, *, run: str = "") -> str:
    out = []
    head = f"The request in {run}" if run else "The request"
    out.append(f"{head}: {_ACCESS_WORDS.get(story.access, story.access)}")
    out.append("")
    for i, s in enumerate(story.steps, start=1):
        mark = "  ✗" if s.broken else ""
        out.append(f"{i}. {s.title}{mark}")
        out.extend(f"   {line}" for line in s.lines)
        for e in s.evidence:
            out.append(f"     evidence: {e}" if not e.startswith("  ") else f"               {e}")
        out.append("")
    out.append(f"Outcome: {story.outcome}")
    if story.warnings:
        out.append("")
        out.append("Warnings")
        out.extend(f"  - {w}" for w in story.warnings)
    return "\n".join(out) + "\n"


def story_json(story: Story) -> dict[str, Any]:
    return {
        "schema": "pathtrace-story/v1",
        "access": story.access,
        "steps": [
            {
                "title": s.title,
                "lines": list(s.lines),
                "evidence": list(s.evidence),
                "broken": s.broken,
            }
            for s in story.steps
        ],
        "outcome": story.outcome,
        "warnings": list(story.warnings),
    }

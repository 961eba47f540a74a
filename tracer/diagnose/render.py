"""Rendering a `Diagnosis`: a short text list for people, JSON (pathtrace-diagnose/v1) for programs.

Pure: a Diagnosis in, a string out. Nothing here decides what a finding says.
"""

from __future__ import annotations

import json
from typing import Any

from tracer.diagnose.model import STEPS, Diagnosis, Finding
from tracer.words import count

SCHEMA = "pathtrace-diagnose/v1"


def finding_json(f: Finding) -> dict[str, Any]:
    return {
        "severity": f.severity,
        "step": f.step,
        "title": f.title,
        "evidence": list(f.evidence),
        "next": f.next or None,
        "follows": f.follows,  # the finding (1-based) whose cause this one is a sign of
    }


def render_json(d: Diagnosis, run: str | None = None) -> str:
    doc: dict[str, Any] = {"schema": SCHEMA}
    if run is not None:
        doc["run"] = run
    doc["findings"] = [finding_json(f) for f in d.findings]
    doc["request"] = dict(d.request)
    doc["connections"] = d.connections
    return json.dumps(doc, indent=2) + "\n"


def _request_line(d: Diagnosis) -> str:
    r = d.request
    if not r:
        return "Request: none found in the captures"
    line = f"Request #{r.get('index')}  {r.get('protocol')}  {r.get('client')} → {r.get('destination')}"
    if r.get("service"):
        line += f"  (Service {r['service']})"
    if r.get("backend"):
        line += f"  backend {r['backend']}"
    summary = r.get("summary")
    return line + (f"\n  {summary}" if summary else "")


def render_text(d: Diagnosis, run: str | None = None, *, verbose: bool = False) -> str:
    """The findings, top first; info findings are listed without evidence unless `verbose`."""
    lines: list[str] = []
    if run is not None:
        lines.append(f"Diagnosis of {run}")
    lines.append(_request_line(d))
    if d.connections:
        hint = (
            "" if d.connections.endswith("none failed") else " (`analyze RUN --failed` lists them)"
        )
        lines.append(f"Connections: {d.connections}{hint}")
    problems = [f for f in d.findings if f.severity != "info" and f.follows is None]
    signs = sum(1 for f in d.findings if f.follows is not None)
    lines.append("")
    if problems:
        verb = "follows" if signs == 1 else "follow"
        them = "it" if len(problems) == 1 else "them"
        more = f" ({count(signs, 'finding')} below {verb} from {them})" if signs else ""
        lines.append(f"{count(len(problems), 'problem')} found; the most likely cause first{more}.")
    else:
        lines.append("No problem found.")
    for i, f in enumerate(d.findings, 1):
        lines.append("")
        lines.append(f"{i}. {f.severity.upper():7} step {f.step} ({STEPS[f.step]}): {f.title}")
        if f.follows is not None:
            lines.append(f"     follows from {f.follows}: the same cause, seen at this step")
        if f.severity != "info" or verbose:
            for e in f.evidence:
                lines.append(f"     - {e}")
            if f.next:
                lines.append(f"     next: {f.next}")
    return "\n".join(lines) + "\n"

"""What one HTML report shows (`Report`) and the escaping every section of it uses.

Pure data; nothing here renders a section.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from html import escape
from typing import Any

from tracer.dnslookup import DnsLookup
from tracer.explain.evidence import PathEvidence
from tracer.model import Journey, Path


@dataclass(frozen=True)
class Report:
    """What one report shows; every field but `source` may be empty.

    `listing` is a `pathtrace-list/v1` document (every connection of the run); `details` the
    paths precomputed for some of its connections (the failed and the slowest), with
    `details_note` saying how they were chosen and whether a cap cut them; `findings` are
    `pathtrace-diagnose/v1` finding objects; `listing_note` says what a capped listing left out
    (`rows_to_embed`); `row` is the traced request's own listing row (its
    outcome and who answered); `names` maps addresses to Service and pod names; `story` is
    `explain`'s step-by-step text; `journeys` every packet of the client's connection.
    """

    source: str
    path: Path | None = None
    dns: DnsLookup | None = None
    evidence: PathEvidence | None = None
    evidence_json: list[dict[str, Any]] | None = None
    findings: Sequence[Mapping[str, Any]] = ()
    listing: Mapping[str, Any] | None = None
    details: Mapping[int, Path] = field(default_factory=dict)
    details_note: str = ""
    listing_note: str = ""
    row: Mapping[str, Any] | None = None
    names: Mapping[str, str] = field(default_factory=dict)
    story: str = ""
    journeys: tuple[Journey, ...] = ()
    title: str = ""
    version: str = ""


def esc(text: object) -> str:
    return escape(str(text), quote=True)

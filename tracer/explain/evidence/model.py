"""The rule evidence of a path as data: one `RewriteEvidence` per rewrite (the node, the rules
walked, the endpoints, the masquerade decision, conntrack) and the `Finding`s where the packets
and the rules disagree. Frozen dataclasses only: `collect` finds them, `tracer.report.evidence`
renders them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from tracer.model import Tuple5
from tracer.rules import ConntrackEntry, EndpointChoice, RuleHit
from tracer.rules.model import Entry

Direction = Literal["forward", "reverse"]
Key = tuple[str, int]  # (direction, 0-based hop index in path.forward / path.reverse)


@dataclass(frozen=True)
class Finding:
    """Something the packets and the rules disagree on, or the rule that stopped the packet.

    `kind`: unexplained-endpoint, unexplained-rewrite, missed-rewrite, masquerade-mismatch,
    conntrack-mismatch, rejected, dropped.
    """

    kind: str
    message: str


@dataclass(frozen=True)
class RewriteEvidence:
    """The evidence for one rewrite (or, with kind "none", for a packet the node let through)."""

    direction: Direction
    hop: int
    node: str | None
    kind: str  # a TranslationKind, or "none" when the walk explains a packet left unchanged
    before: Tuple5
    after: Tuple5 | None
    entry: Entry | None = None
    mode: str | None = None  # iptables | nftables | ipvs
    rules_source: str | None = None
    verdict: str | None = None
    service: str | None = None
    rules: tuple[RuleHit, ...] = ()
    endpoints: tuple[EndpointChoice, ...] = ()
    chosen: str | None = None  # the endpoint the packets show (DNAT)
    chosen_probability: float | None = None
    masquerade: bool | None = None  # the rules' decision
    masqueraded: bool | None = None  # what the packets show
    conntrack: ConntrackEntry | None = None
    findings: tuple[Finding, ...] = ()
    notes: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    # "socket": translated before the wire by a socket load-balancer (no rule made it).
    by: str | None = None

    @property
    def key(self) -> Key:
        return (self.direction, self.hop)


@dataclass(frozen=True)
class PathEvidence:
    """Every rewrite's evidence, in path order (forward first), and findings for the whole path."""

    rewrites: tuple[RewriteEvidence, ...] = ()
    findings: tuple[Finding, ...] = field(default=())

    def get(self, direction: str, hop: int) -> RewriteEvidence | None:
        for r in self.rewrites:
            if r.key == (direction, hop):
                return r
        return None

    @property
    def by_key(self) -> dict[Key, RewriteEvidence]:
        return {r.key: r for r in self.rewrites}

    @property
    def all_findings(self) -> tuple[Finding, ...]:
        seen: dict[Finding, None] = {}
        for r in self.rewrites:
            for f in r.findings:
                seen.setdefault(f, None)
        for f in self.findings:
            seen.setdefault(f, None)
        return tuple(seen)


def path_findings(evidences: Sequence[PathEvidence]) -> tuple[Finding, ...]:
    """Every finding of several paths, once each, in order."""
    seen: dict[Finding, None] = {}
    for e in evidences:
        for f in e.all_findings:
            seen.setdefault(f, None)
    return tuple(seen)

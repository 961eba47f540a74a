"""What diagnosis takes and what it returns: the run's facts, and findings.

`RunFacts` is everything one run directory says, already decoded: the manifest, the correlated
connections, the HTTP messages and ICMP errors seen in them, the DNS lookups, each node's rules, conntrack
and addresses, and the cluster's health facts. `Finding` is one conclusion with its evidence.
Frozen dataclasses only: no reading, no deciding.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from tracer.dnslookup import DnsLookup
from tracer.explain.beforewire import BeforeWire
from tracer.explain.facts import NodeFacts
from tracer.health import HealthFacts
from tracer.model import Connection, Path, Tuple5
from tracer.rundir import Manifest

Severity = Literal["error", "warning", "info"]
SEVERITIES: tuple[str, ...] = ("error", "warning", "info")

# The six troubleshooting steps (reference/access-paths.md), by number.
STEPS: dict[int, str] = {
    1: "nodes & pods",
    2: "backend service",
    3: "DNS",
    4: "Service / kube-proxy",
    5: "Ingress",
    6: "path",
}


@dataclass(frozen=True)
class Finding:
    """One conclusion: how bad, which step, what, why we think so, and what to try next.

    `weight` orders findings of the same severity: a root cause (a REJECT rule, a stale DNAT
    target) outranks the symptoms it causes elsewhere (an unanswered SYN in the golden signals).
    """

    severity: Severity
    step: int
    title: str
    evidence: tuple[str, ...] = ()
    next: str = ""
    weight: int = 0
    # The finding (1-based, in the diagnosis' order) this one follows from: the same cause seen
    # from another step, not another problem. None for a cause or a finding of its own.
    follows: int | None = None


@dataclass(frozen=True)
class HttpEvent:
    """An HTTP/1 request line or status line, at one point."""

    connection: int
    direction: Literal["forward", "reverse"]
    point: str
    frame: int
    t_ns: int
    method: str | None = None
    target: str | None = None
    host: str | None = None
    status: int | None = None


@dataclass(frozen=True)
class IcmpError:
    """An ICMP destination-unreachable (or other error) and the packet it quotes."""

    point: str
    frame: int
    t_ns: int
    src: str
    dst: str
    icmp_type: int
    code: int
    name: str
    quoted: Tuple5 | None = None
    seen: tuple[tuple[str, int], ...] = ()  # every (point, frame) that saw it


# One node's saved facts (rules, conntrack, addresses, subnets): the same record explain reads.
NodeInfo = NodeFacts


@dataclass(frozen=True)
class RunFacts:
    """Everything a run directory holds, decoded; the input of `diagnose`."""

    run: str
    manifest: Manifest
    connections: tuple[Connection, ...]
    main: int | None = None  # the connection the user asked about (or the one chosen)
    offsets: Mapping[str, int] = field(default_factory=dict)  # point -> clock offset (ns)
    summaries: Mapping[int, str] = field(default_factory=dict)
    http: tuple[HttpEvent, ...] = ()
    icmp: tuple[IcmpError, ...] = ()
    nodes: Mapping[str, NodeInfo] = field(default_factory=dict)
    paths: Mapping[int, Path] = field(default_factory=dict)  # connection -> its path
    health: HealthFacts | None = None
    warnings: tuple[str, ...] = ()
    # The DNS lookups (tracer.dnslookup), the main request's own first when it had one.
    lookups: tuple[DnsLookup, ...] = ()
    # How every connection ended, from the connection table (`analyze --list`'s outcomes):
    # "12 of 40 connections failed: 4 reset by ...", None when not computed.
    outcomes: str | None = None
    # The main request's Service when a socket load-balancer translated it before the wire.
    before_wire: BeforeWire | None = None


@dataclass(frozen=True)
class Diagnosis:
    """The findings, most important first, and the request they are about."""

    findings: tuple[Finding, ...]
    request: Mapping[str, object] = field(default_factory=dict)
    # How every connection of the run ended ("4 of 40 connections failed: 3 reset by ..."),
    # the outcomes `analyze --list` shows; None when not computed.
    connections: str | None = None

    @property
    def problem(self) -> bool:
        """True when any finding is an error or a warning (exit code 4)."""
        return any(f.severity in ("error", "warning") for f in self.findings)

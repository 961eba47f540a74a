"""The six troubleshooting steps, as pure functions from `RunFacts` to findings, and `diagnose`
that runs them and orders what they found.

Step 1 nodes & pods (`nodes`: health facts), 2 the backend's golden signals (`backend`), 3 DNS
(`dns`), 4 the Service and kube-proxy (`service`: endpoints, DNAT, REJECT/DROP, stale targets,
externalTrafficPolicy=Local, the node's own rules; and `tracer.diagnose.conntrack_stats`), 5 the
Ingress controller (`ingress`), 6 the path of the request (`path`: where it was last seen, where
the time went); what they share is in `common`. Each step returns findings with their evidence
(point and Wireshark frame number, tuple, rule text, conntrack line, API object) and the next
thing to try; `diagnose` orders them. No I/O here: everything comes in through `RunFacts`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

from tracer.diagnose.conntrack_stats import step_conntrack_stats
from tracer.diagnose.model import SEVERITIES, Diagnosis, Finding, RunFacts
from tracer.diagnose.steps.backend import step_backend
from tracer.diagnose.steps.common import (
    LOCATED,
    ROOT,
    SLOW_MS,
    SYMPTOM,
    backend_of,
    find_service,
    main_connection,
    replied,
    svc_name,
)
from tracer.diagnose.steps.dns import step_dns
from tracer.diagnose.steps.ingress import step_ingress
from tracer.diagnose.steps.nodes import step_health
from tracer.diagnose.steps.path import step_path
from tracer.diagnose.steps.service import step_service
from tracer.model import Endpoint

__all__ = [
    "SLOW_MS",
    "diagnose",
    "order",
    "request_info",
    "step_backend",
    "step_dns",
    "step_health",
    "step_ingress",
    "step_path",
    "step_service",
]


def request_info(f: RunFacts) -> dict[str, object]:
    c = main_connection(f)
    if c is None:
        return {}
    path = f.paths.get(c.index)
    # What the client asked for (before a sidecar's REDIRECT or a socket load-balancer),
    # and where the request ended (past the sidecars).
    dest = path.request.destination if path is not None else str(c.client.dst)
    host, _, port = dest.rpartition(":")
    asked = Endpoint(host.strip("[]"), int(port)) if port.isdigit() else c.client.dst
    found = find_service(f.manifest, asked) or find_service(f.manifest, c.client.dst)
    backend: object = backend_of(c)
    if path is not None and (path.stitches or f.before_wire is not None):
        backend = path.request.backend
    return {
        "index": c.index,
        "protocol": c.protocol,
        "client": str(c.client.src),
        "destination": dest,
        "backend": str(backend) if backend is not None else None,
        "service": svc_name(found[0]) if found else None,
        "summary": f.summaries.get(c.index, c.summary),
        "points": list(c.points),
        "answered": replied(c),
    }


def order(findings: Iterable[Finding]) -> tuple[Finding, ...]:
    """Errors first, then warnings, then info; within each, root causes before symptoms. A
    symptom (the backend's failed connections) and, under a root cause, the place the request
    stopped are marked as following from the first cause: one cause is one problem."""
    ranked = sorted(findings, key=lambda x: (SEVERITIES.index(x.severity), -x.weight, x.step))
    cause = next(
        (i for i, f in enumerate(ranked) if f.severity != "info" and f.weight >= LOCATED), None
    )
    if cause is None:
        return tuple(ranked)
    top = ranked[cause].weight
    return tuple(
        replace(f, follows=cause + 1)
        if i != cause
        and f.severity == "error"
        and (f.weight == SYMPTOM or (top == ROOT and f.weight == LOCATED))
        else f
        for i, f in enumerate(ranked)
    )


def diagnose(facts: RunFacts, *, slow_ms: float = SLOW_MS) -> Diagnosis:
    """Run the six steps over a run's facts; the top finding is the most likely cause."""
    findings: list[Finding] = []
    findings += step_health(facts)
    findings += step_backend(facts)
    findings += step_dns(facts)
    findings += step_service(facts)
    findings += step_conntrack_stats(facts)
    findings += step_ingress(facts)
    findings += step_path(facts, slow_ms)
    return Diagnosis(
        findings=order(findings), request=request_info(facts), connections=facts.outcomes
    )

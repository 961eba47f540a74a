"""Step 5, the Ingress controller: for each request that reached an ingress capture point, what
the controller answered, which upstreams it tried and how long it took itself. Pure: facts in,
findings out.
"""

from __future__ import annotations

from tracer.diagnose.model import Finding, RunFacts
from tracer.diagnose.steps.common import (
    LOCATED,
    ROOT,
    HttpIndex,
    app_connections,
    backend_of,
    frame_ref,
    http_by_connection,
    is_dns_conn,
    ms,
)
from tracer.model import Connection

UPSTREAM_WINDOW_NS = 60 * 10**9  # an upstream call starts at most this long after the request


def step_ingress(f: RunFacts) -> list[Finding]:
    points = [p.name for p in f.manifest.points if p.role == "ingress"]
    if not points:
        return []
    out: list[Finding] = []
    http = http_by_connection(f)
    for ing in points:
        upstream = [
            c for c in f.connections if c.points and c.points[0] == ing and not is_dns_conn(c)
        ]
        up_index = {c.index for c in upstream}
        legs = [
            c
            for c in app_connections(f)
            if ing in c.points and c.points[0] != ing and c.index not in up_index
        ]
        out += [_leg_finding(ing, leg, upstream, http) for leg in legs]
    return out


def _leg_finding(ing: str, leg: Connection, upstream: list[Connection], http: HttpIndex) -> Finding:
    """One client leg through the controller `ing`: its request, the upstream calls made for it
    (those that started while it was open) and the controller's answer."""
    resp = http.get((leg.index, "reverse"), [])
    req = http.get((leg.index, "forward"), [])
    ups = [
        u
        for u in upstream
        if not req
        or (
            u.start_ns >= leg.start_ns
            and u.start_ns <= max(e.t_ns for e in req) + UPSTREAM_WINDOW_NS
        )
    ]
    evidence = [
        f"client leg #{leg.index} {leg.client}: "
        + (
            f"{req[0].method} {req[0].target} (Host {req[0].host}) at "
            f"{frame_ref(req[0].point, req[0].frame)}"
            if req
            else "no HTTP request seen"
        )
    ]
    chosen: list[str] = []
    up_time = 0
    for u in ups:
        ub = backend_of(u) or u.client.dst
        ustat = http.get((u.index, "reverse"), [])
        ureq = http.get((u.index, "forward"), [])
        chosen.append(str(ub))
        if ureq and ustat:
            up_time += ustat[0].t_ns - ureq[0].t_ns
        evidence.append(
            f"upstream #{u.index} {u.client} -> {ub}: "
            + (f"HTTP {ustat[0].status}" if ustat else "no response")
        )
    own = resp[0].t_ns - req[0].t_ns - up_time if resp and req and ups else None
    if own is not None:
        evidence.append(f"controller's own time ≈ {ms(own)} (client-leg time minus upstream)")
    return _answer(ing, resp[0].status if resp else None, chosen, tuple(evidence))


def _answer(ing: str, status: int | None, chosen: list[str], evidence: tuple[str, ...]) -> Finding:
    """What the controller answered: nothing, an upstream failure (5xx) or a success."""
    if status is None:
        return Finding(
            "error",
            5,
            f"The Ingress controller ({ing}) did not answer the request",
            evidence,
            "kubectl logs on the controller pod; check its Service/NodePort and that it is Ready",
            LOCATED,
        )
    if status >= 500:
        return Finding(
            "error",
            5,
            f"The Ingress controller ({ing}) answered HTTP {status}"
            + (f" after trying {', '.join(chosen)}" if chosen else " without reaching a backend"),
            evidence,
            "502/503/504 from the controller mean its upstream failed: check the "
            "backend Service's endpoints (step 4) and the controller's error log",
            ROOT - 10,
        )
    return Finding(
        "info",
        5,
        f"The Ingress controller ({ing}) answered HTTP {status}"
        + (f" via upstream {', '.join(chosen)}" if chosen else ""),
        evidence,
    )

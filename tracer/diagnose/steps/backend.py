"""Step 2, the backend's golden signals: per backend (where the requests went after the last
DNAT), how many connections and requests, which of them failed (HTTP 5xx, a TCP reset, a SYN
never answered) and the server time's percentiles. Pure: facts in, findings out.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from tracer.correlate.path import local_redirect
from tracer.diagnose.model import Finding, RunFacts
from tracer.diagnose.steps.common import (
    SYMPTOM,
    HttpIndex,
    app_connections,
    backend_of,
    forward_journeys,
    frame_ref,
    http_by_connection,
    ms,
    obs_ref,
    pod_addresses,
    related_icmp,
    replied,
)
from tracer.model import Connection
from tracer.words import count


def step_backend(f: RunFacts) -> list[Finding]:
    pods = pod_addresses(f)
    http = http_by_connection(f)
    groups: dict[str, list[Connection]] = {}
    for c in app_connections(f):
        b = backend_of(c)
        key = str(b if b is not None else c.client.dst)
        groups.setdefault(key, []).append(c)
    return [_backend_finding(f, http, pods, key, conns) for key, conns in groups.items()]


def _backend_finding(
    f: RunFacts, http: HttpIndex, pods: Mapping[str, str], key: str, conns: list[Connection]
) -> Finding:
    """One backend's signals: its traffic, its errors and its server time."""
    errors: list[str] = []
    server: list[int] = []
    requests = 0
    for c in conns:
        reqs = http.get((c.index, "forward"), [])
        requests += len(reqs) or (1 if any(j.kind == "data" for j in c.journeys) else 0)
        errors += _errors(f, http, c)
        path = f.paths.get(c.index)
        if path is not None and path.latency.server_ns is not None:
            server.append(path.latency.server_ns)
    ip = key.rsplit(":", 1)[0]
    title = (
        f"Backend {_who(key, ip, pods, conns)}: {count(len(conns), 'connection')}, "
        f"{count(requests, 'request')}, {count(len(errors), 'error')}{_server_time(server)}"
    )
    if not errors:
        return Finding("info", 2, title, ())
    return Finding(
        "error",
        2,
        title,
        tuple(errors[:10]),
        "see the Service and path findings for where these fail"
        + (f"; kubectl logs for the pod at {ip}" if ip in pods else ""),
        SYMPTOM,
    )


def _errors(f: RunFacts, http: HttpIndex, c: Connection) -> list[str]:
    """A connection's failures: HTTP 5xx answers, its first TCP reset, a SYN never answered."""
    out: list[str] = []
    for e in http.get((c.index, "reverse"), []):
        if e.status is not None and e.status >= 500:
            out.append(f"#{c.index}: HTTP {e.status} ({frame_ref(e.point, e.frame)})")
    for j in c.journeys:
        if j.kind == "rst":
            o = j.observations[0]
            out.append(f"#{c.index}: TCP reset {o.tuple5} ({obs_ref(o)})")
            break
    if c.protocol == "tcp" and not replied(c):
        syns = forward_journeys(c, "syn")
        icmp = related_icmp(f, c)
        why = f"answered only by ICMP {icmp[0].name}" if icmp else "never answered"
        out.append(f"#{c.index}: {c.client}: SYN sent {count(len(syns), 'time')}, {why}")
    return out


def _who(key: str, ip: str, pods: Mapping[str, str], conns: list[Connection]) -> str:
    """The backend's address, its pod, and whether it is a sidecar or was never translated."""
    who = f"{key} (pod {pods[ip]})" if ip in pods else key
    redirects = [local_redirect(c) for c in conns]
    if all(r is not None for r in redirects):
        asked = ", ".join(dict.fromkeys(str(r.before.dst) for r in redirects if r))
        who += f" (the client's sidecar; the app asked for {asked})"
    elif all(backend_of(c) is None for c in conns):
        who += " (not translated)"
    return who


def _server_time(server: Sequence[int]) -> str:
    # Percentiles of one sample would repeat the same number three times.
    if len(server) == 1:
        return f"; server time {ms(server[0])}"
    if server:
        return (
            f"; server time p50 {ms(_percentile(server, 50))}, "
            f"p90 {ms(_percentile(server, 90))}, p99 {ms(_percentile(server, 99))} "
            f"over {count(len(server), 'connection')}"
        )
    return ""


def _percentile(values: Sequence[int], q: float) -> int:
    """Nearest-rank percentile (no interpolation: every value reported was measured)."""
    s = sorted(values)
    return s[max(0, math.ceil(q / 100 * len(s)) - 1)]

"""Step 6, the path of the request: for an answered request, where the time went (server time,
each segment, the proxies) and its retransmissions; for an unanswered one, where it was last
seen, where it should have appeared next, and the rule on that node that dropped it. Pure: facts
in, findings out.
"""

from __future__ import annotations

from dataclasses import dataclass

from tracer.diagnose.model import Finding, NodeInfo, RunFacts
from tracer.diagnose.steps.common import (
    LOCATED,
    MS,
    SLOW,
    SLOW_MS,
    SYMPTOM,
    backend_of,
    conntrack_for,
    family,
    forward_journeys,
    frame_ref,
    icmp_lines,
    main_connection,
    ms,
    node_of,
    obs_ref,
    pod_addresses,
    related_icmp,
    replied,
    role,
    stop_rule,
    walk_node,
)
from tracer.model import Connection, Endpoint, Journey, Observation, Path
from tracer.rules.model import in_network
from tracer.words import count


def step_path(f: RunFacts, slow_ms: float = SLOW_MS) -> list[Finding]:
    c = main_connection(f)
    if c is None:
        return []
    rtx = [j for j in c.journeys if j.retransmission > 0]
    if replied(c) or c.protocol not in ("tcp", "udp", "sctp"):
        path = f.paths.get(c.index)
        if path is None:
            return []
        out = [_timing(f, c, path, slow_ms)]
        if rtx:
            out.append(_retransmissions(rtx))
        return out
    # No answer: where was the request last seen, and where should it have appeared next?
    journeys = forward_journeys(c)
    if not journeys:
        return []
    return [_last_seen(f, c, journeys, rtx)]


def expected_points(f: RunFacts, c: Connection, backend: Endpoint | None) -> list[str]:
    """The manifest's capture points the request should cross, in path order."""
    pods = pod_addresses(f)
    target_pod = pods.get(backend.ip) if backend is not None else None
    target_node = _target_node(f, backend) if backend is not None else None
    first = c.points[0] if c.points else None
    nodes: list[str] = []
    start_node = node_of(f, first) if first else None
    dst_node = next((n for n, info in f.nodes.items() if c.client.dst.ip in info.addresses), None)
    for n in (start_node, dst_node, target_node):
        if (
            n
            and n not in nodes
            and any(p.role == "node" and p.node == n for p in f.manifest.points)
        ):
            nodes.append(n)
    out: list[str] = [first] if first else []
    for n in nodes:
        out.extend(
            p.name
            for p in f.manifest.points
            if p.role == "node" and p.node == n and p.name not in out
        )
    for p in f.manifest.points:
        if p.role == "server" and p.name not in out:
            ref = f"{p.namespace}/{p.pod}" if p.pod else None
            if (ref and ref == target_pod) or (target_pod is None and p.node == target_node):
                out.append(p.name)
    return out


def _target_node(f: RunFacts, backend: Endpoint) -> str | None:
    """The backend's node: the manifest's endpoint says it, else the node whose pod subnet
    holds the address."""
    target_node = None
    for s in f.manifest.services:
        for e in s.endpoints:
            if e.address == backend.ip and e.node:
                target_node = e.node
    for info in f.nodes.values():
        if any(in_network(backend.ip, cidr) and name != "eth0" for name, cidr in info.subnets):
            target_node = target_node or info.node
    return target_node


# --- an answered request: where the time went ----------------------------------------------------


def _latency_parts(path: Path) -> list[tuple[str, int]]:
    """The pieces of the request's time: the server's, each segment's, the proxies'."""
    lat = path.latency
    parts: list[tuple[str, int]] = []
    if lat.server_ns is not None:
        parts.append(
            (f"server time at {path.forward[-1].point if path.forward else '?'}", lat.server_ns)
        )
    for s in lat.segments:
        parts.append((f"segment {s.from_point} -> {s.to_point}", s.median_ns))
    if lat.proxy_ns is not None and path.stitches:
        proxies = ", ".join(dict.fromkeys(st.proxy for st in path.stitches))
        parts.append((f"time inside the proxies ({proxies})", lat.proxy_ns))
    return parts


def _timing(f: RunFacts, c: Connection, path: Path, slow_ms: float) -> Finding:
    """The path complete, or slow where its largest share of the time is `slow_ms` or more."""
    lat = path.latency
    seq = " -> ".join(dict.fromkeys(h.point for h in path.forward))
    parts = _latency_parts(path)
    evidence = [f"path: {seq}"]
    if lat.total_ns is not None:
        evidence.append(
            f"total {ms(lat.total_ns)} (first request packet to last reply packet at the client)"
        )
    if lat.connect_ns is not None:
        evidence.append(f"connect {ms(lat.connect_ns)} (SYN to SYN-ACK at the client)")
    evidence += [f"{what}: {ms(ns)}" for what, ns in parts]
    top = max(parts, key=lambda x: x[1]) if parts else None
    if top is not None and top[1] >= slow_ms * MS:
        share = f" of {ms(lat.total_ns)} total" if lat.total_ns else ""
        srv = top[0].startswith("server")
        backend = backend_of(c)
        req = [e for e in f.http if e.connection == c.index]
        evidence += [
            f"{frame_ref(e.point, e.frame)}: "
            + (f"{e.method} {e.target}" if e.direction == "forward" else f"HTTP {e.status}")
            for e in req[:4]
        ]
        return Finding(
            "warning",
            6,
            f"Slow: the {top[0]} holds {ms(top[1])}{share}"
            + (f" ({backend})" if srv and backend else ""),
            tuple(evidence),
            "the time is spent inside the server between reading the request and "
            "writing the answer: look at the application (its logs, its own "
            "dependencies, CPU throttling: kubectl top pod), not the network"
            if srv
            else "the time is spent on the network between these points: check the "
            "links, MTU/fragmentation and the nodes' load",
            SLOW,
        )
    total = f"{ms(lat.total_ns)} total" if lat.total_ns is not None else "answered"
    largest = f"; largest share: {top[0]} {ms(top[1])}" if top else ""
    return Finding("info", 6, f"Path complete: {seq}; {total}{largest}", tuple(evidence))


def _retransmissions(rtx: list[Journey]) -> Finding:
    first = rtx[0].observations[0]
    return Finding(
        "warning",
        6,
        f"{count(len(rtx), 'retransmission')} on the way, the first at {first.point}",
        tuple(
            f"{obs_ref(j.observations[0])}: {j.kind} retransmission {j.retransmission}, "
            f"seen at {', '.join(dict.fromkeys(o.point for o in j.observations))}"
            for j in rtx[:6]
        ),
        "retransmissions that reach the server mean lost replies; ones that do not "
        "mean loss on the way: compare where each copy was last seen",
        SYMPTOM - 10,
    )


# --- an unanswered request: where it stopped -------------------------------------------------------


@dataclass(frozen=True)
class _Stop:
    """Where an unanswered request was last seen, the expected points it never reached, and
    that node's interface toward the backend and the rule there that stopped it (if any)."""

    last: Observation
    expected: list[str]
    pending: list[str]
    node: str | None
    info: NodeInfo | None  # the node's facts when the last sighting was at a node point
    next_iface: str | None  # "cni0 (10.244.2.1/24)"
    verdict: str
    drop_rule: str | None

    @property
    def kube(self) -> bool:
        """True when the rule that stopped it is kube-proxy's."""
        return bool(self.drop_rule and "KUBE-" in self.drop_rule)


def _stop(f: RunFacts, c: Connection, journeys: list[Journey], backend: Endpoint | None) -> _Stop:
    longest = max(journeys, key=lambda j: (len(j.observations), j.retransmission))
    last = longest.observations[-1]
    seen = {o.point for j in journeys for o in j.observations}
    expected = expected_points(f, c, backend)
    node = node_of(f, last.point)
    info = f.nodes.get(node) if node and role(f, last.point) == "node" else None
    next_iface = None
    if info is not None and backend is not None:
        next_iface = next(
            (
                f"{name} ({cidr})"
                for name, cidr in info.subnets
                if in_network(backend.ip, cidr) and name != last.interface
            ),
            None,
        )
    result = walk_node(info, last.tuple5) if info is not None else None
    drop_rule = (
        stop_rule(result) if result is not None and result.verdict in ("DROP", "REJECT") else None
    )
    return _Stop(
        last=last,
        expected=expected,
        pending=[p for p in expected if p not in seen],
        node=node,
        info=info,
        next_iface=next_iface,
        verdict=result.verdict if result is not None else "",
        drop_rule=drop_rule,
    )


def _last_seen(f: RunFacts, c: Connection, journeys: list[Journey], rtx: list[Journey]) -> Finding:
    backend = backend_of(c)
    stop = _stop(f, c, journeys, backend)
    node, pending, next_iface = stop.node, stop.pending, stop.next_iface
    target = pending[0] if pending else next_iface or "the server"
    return Finding(
        "error",
        6,
        _stop_title(f, stop, backend),
        tuple(_stop_evidence(f, c, journeys, rtx, stop)),
        (
            "see the Service finding (step 4): the rule is kube-proxy's"
            if stop.kube
            else f"remove or fix that rule on {node} (iptables -S FORWARD; a NetworkPolicy "
            "may have installed it)"
            if stop.drop_rule
            else f"capture at {target} and check {node or 'the node'}'s filter rules "
            "(iptables-save), NetworkPolicies and routes toward "
            f"{backend or c.client.dst}"
        ),
        LOCATED,
    )


def _stop_title(f: RunFacts, stop: _Stop, backend: Endpoint | None) -> str:
    last, node, pending, next_iface = stop.last, stop.node, stop.pending, stop.next_iface
    where = ", ".join(x for x in (last.interface, last.direction) if x)
    title = f"The request was last seen at {last.point}" + (f" ({where})" if where else "")
    if pending:
        title += f"; it never reached {pending[0]}"
        if next_iface and not any(role(f, p) == "node" and node_of(f, p) == node for p in pending):
            title += f" (next on {node}: {next_iface.split()[0]})"
    elif next_iface:
        title += f"; it never left {node} on {next_iface.split()[0]} toward {backend}"
    if stop.drop_rule:
        how = "kube-proxy's rules" if stop.kube else "a filter rule"
        done = {"DROP": "Dropped", "REJECT": "Rejected"}.get(stop.verdict, stop.verdict)
        title = f"{done} on {node} by {how}: " + title[0].lower() + title[1:]
    elif node and not pending:
        title += f": dropped on {node}"
    return title


def _stop_evidence(
    f: RunFacts, c: Connection, journeys: list[Journey], rtx: list[Journey], stop: _Stop
) -> list[str]:
    # "#N" is a connection's number everywhere; a send is named as the merged pcapng names it.
    evidence = [
        f"{j.kind}, {f'retransmission {j.retransmission}' if j.retransmission else 'first send'}: "
        f"last seen {obs_ref(j.observations[-1])} {j.observations[-1].tuple5}"
        for j in journeys[:6]
    ]
    evidence.append(
        f"{count(len(journeys), 'send')}, {count(len(rtx), 'retransmission')}, no reply captured at any point"
    )
    evidence.append(
        "expected path: " + " -> ".join(stop.expected) if stop.expected else "expected path unknown"
    )
    evidence += icmp_lines(related_icmp(f, c), 3)
    if stop.drop_rule and stop.info is not None:
        evidence.append(f"{stop.info.for_family(family(c.client)).rules_source}: {stop.drop_rule}")
    ct = conntrack_for(f.nodes.get(node_of(f, c.points[0]) or "") if c.points else None, c.client)
    if ct is not None:
        evidence.append(f"conntrack on {node_of(f, c.points[0])}: {ct.text.strip()}")
    return evidence

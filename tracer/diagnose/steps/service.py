"""Step 4, the Service and kube-proxy: what happened to the request at the Service it was sent to.

A REJECT (a Service without endpoints), a DROP for externalTrafficPolicy=Local on a node
without a local endpoint, a DNAT to a stale endpoint nothing answers at, the DNAT the packets
show against the one the node's saved rules make, no DNAT at all; a meshed app's request
REDIRECTed to its sidecar; a Service a socket load-balancer translated before the wire. Each
with its evidence: the packets, the rule as it reads in the dump, the conntrack line, the
manifest's Service. Pure: facts in, findings out.
"""

from __future__ import annotations

from dataclasses import dataclass

from tracer.correlate.path import local_redirect
from tracer.diagnose.model import Finding, IcmpError, NodeInfo, RunFacts
from tracer.diagnose.steps.common import (
    LOCATED,
    ROOT,
    SYMPTOM,
    backend_of,
    conntrack_for,
    family,
    find_service,
    forward_journeys,
    frame_ref,
    icmp_lines,
    main_connection,
    node_of,
    obs_ref,
    pod_addresses,
    related_icmp,
    replied,
    role,
    stop_rule,
    svc_name,
    walk_node,
)
from tracer.explain.beforewire import BeforeWire
from tracer.model import Connection, Endpoint, Observation, Translation, Tuple5
from tracer.rules import Packet, WalkResult
from tracer.rules.cilium import walk_cilium
from tracer.rules.conntrack import ConntrackEntry
from tracer.rundir import Service, ServicePort
from tracer.words import count

# ICMP errors (RFC 792, RFC 4443): (type, code) for IPv4 and IPv6.
_PORT_UNREACH = {(3, 3), (1, 4)}
_HOST_UNREACH = {(3, 0), (3, 1), (1, 0), (1, 3)}


def step_service(f: RunFacts) -> list[Finding]:
    c = main_connection(f)
    if c is None or c.protocol not in ("tcp", "udp", "sctp"):
        return []
    redirect = local_redirect(c)
    if redirect is not None:
        return _sidecar_service(f, c, redirect)
    return _service_findings(f, c)


def _sidecar_service(f: RunFacts, c: Connection, redirect: Translation) -> list[Finding]:
    """A meshed app's request: its own pod REDIRECTed it to the sidecar, which asked the
    Service itself; the Service's translation is told on the sidecar's connection."""
    asked = redirect.before.dst
    found = find_service(f.manifest, asked)
    name = svc_name(found[0]) if found else str(asked)
    point = c.journeys[0].observations[0].point if c.journeys else "?"
    own = f.nodes.get(point)
    evidence = [f"{frame_ref(point, c.journeys[0].observations[0].frame)}: {redirect.after}"]
    ct = conntrack_for(own, redirect.before) if own is not None else None
    if ct is not None:
        evidence.append(f"pods/{point}/conntrack.txt: {ct.text.strip()}")
    if own is not None and own.rules_source:
        evidence.append(f"{own.rules_source}: the pod's nat table holds the sidecar's REDIRECTs")
    out = [
        Finding(
            "info",
            4,
            f"Sidecar: the app's connection to {asked} ({name}) was REDIRECTed to "
            f"{redirect.after.dst} by {point}'s own rules; the sidecar then called the Service",
            tuple(evidence),
        )
    ]
    upstream = next(
        (
            u
            for u in f.connections
            if u.index != c.index
            and u.client.dst == asked
            and u.client.src.ip == c.client.src.ip
            and u.start_ns >= c.start_ns
        ),
        None,
    )
    if upstream is not None:
        out += _service_findings(f, upstream)
    return out


def _service_findings(f: RunFacts, c: Connection) -> list[Finding]:
    found = find_service(f.manifest, c.client.dst)
    if found is None and f.before_wire is not None and f.before_wire.backend == c.client.dst:
        return _before_wire(f, c, f.before_wire)
    if found is None:
        if backend_of(c) is None:
            return [
                Finding(
                    "info",
                    4,
                    f"{c.client.dst} is not a Service in the run's manifest: no kube-proxy "
                    "translation expected",
                    (f"manifest: {count(len(f.manifest.services), 'Service')} listed",),
                )
            ]
        return []
    s = _seen(f, c, *found)
    # A REJECT or a DROP by kube-proxy is the cause: nothing else about the Service matters.
    for stopped in (_rejected(s), _no_local_endpoint(s)):
        if stopped is not None:
            return [stopped]
    if s.backend is not None:
        return _translated(f, s, s.backend)
    return _untranslated(s)


def _before_wire(f: RunFacts, c: Connection, bw: BeforeWire) -> list[Finding]:
    """A Service a socket load-balancer translated before any packet carried its address: no
    kube-proxy rule serves it; Cilium's own tables must list the backend the packets show."""
    path = f.paths.get(c.index)
    node = path.forward[1].node if path is not None and len(path.forward) > 1 else None
    info = f.nodes.get(node) if node else None
    probe = Tuple5(c.client.proto, c.client.src, bw.frontend)
    result = walk_node(info, probe)
    lines = list(bw.because)
    if result is not None and info is not None:
        lines.append(
            f"{info.rules_source}: {bw.frontend} walks to {result.verdict} — no kube-proxy"
            " rule serves this Service, as expected with a socket load-balancer"
        )
    if info is not None and info.cilium is not None:
        ebpf = walk_cilium(info.cilium, Packet(probe.proto, probe.src, probe.dst))
        backends = ", ".join(e.address for e in ebpf.endpoints) or "none"
        listed = any(e.address == str(bw.backend) for e in ebpf.endpoints)
        lines.append(
            f"{info.cilium.source}: Cilium serves {bw.frontend} with backends {backends}"
            + ("" if listed else f"; {bw.backend} is NOT one of them")
        )
        if not listed:
            return [
                Finding(
                    "warning",
                    4,
                    f"{bw.words}; but Cilium on {node} does not list {bw.backend} as a backend",
                    tuple(lines),
                    f"compare `cilium-dbg service list` and `cilium-dbg bpf lb list` on {node}: "
                    "the agent and the datapath may have diverged (a failed map update)",
                )
            ]
    return [Finding("info", 4, bw.words, tuple(lines))]


# --- what the run shows about the request to a Service -------------------------------------------


@dataclass(frozen=True)
class _Seen:
    """The request to one Service as the run shows it: the packets, the node that translated it
    (or first saw it), that node's saved rules walked with the request and its conntrack entry,
    and the evidence lines they give."""

    c: Connection
    svc: Service
    port: ServicePort
    backend: Endpoint | None
    answered: bool
    rejects: tuple[IcmpError, ...]  # ICMP port unreachable about it
    unreach: tuple[IcmpError, ...]  # ICMP host unreachable about it
    first_node: Observation | None  # its first sighting at a node
    dnat_at: Observation | None  # its first sighting with the backend as destination
    node: str | None
    info: NodeInfo | None
    result: WalkResult | None
    ct: ConntrackEntry | None
    rule_line: str | None
    ct_line: str | None
    syn_line: str
    svc_line: str

    @property
    def name(self) -> str:
        return svc_name(self.svc)


def _seen(f: RunFacts, c: Connection, svc: Service, port: ServicePort) -> _Seen:
    icmp = related_icmp(f, c)
    syns = forward_journeys(c, "syn") or forward_journeys(c)
    answered = replied(c)
    backend = backend_of(c)
    first_node = _first_node_sighting(f, c)
    dnat_at = _dnat_sighting(c, backend) if backend is not None else None
    where = dnat_at or first_node
    node = node_of(f, where.point) if where is not None else None
    info = f.nodes.get(node) if node else None
    result = walk_node(info, c.client)
    rule = stop_rule(result) if result is not None else None
    source = info.for_family(family(c.client)).rules_source if info else None
    ct = conntrack_for(info, c.client)
    return _Seen(
        c=c,
        svc=svc,
        port=port,
        backend=backend,
        answered=answered,
        rejects=tuple(e for e in icmp if (e.icmp_type, e.code) in _PORT_UNREACH),
        unreach=tuple(e for e in icmp if (e.icmp_type, e.code) in _HOST_UNREACH),
        first_node=first_node,
        dnat_at=dnat_at,
        node=node,
        info=info,
        result=result,
        ct=ct,
        rule_line=f"{source}: {rule}" if source and rule else None,
        ct_line=f"nodes/{node}/conntrack.txt: {ct.text.strip()}" if ct is not None else None,
        syn_line=(
            f"{c.client} sent {count(len(syns), 'time')}"
            + (f" ({', '.join(obs_ref(j.observations[0]) for j in syns[:4])})" if syns else "")
            + ("" if answered else ", never answered")
        ),
        svc_line=_svc_text(svc, port),
    )


def _first_node_sighting(f: RunFacts, c: Connection) -> Observation | None:
    for j in forward_journeys(c):
        for o in j.observations:
            if role(f, o.point) == "node":
                return o
    return None


def _dnat_sighting(c: Connection, backend: Endpoint) -> Observation | None:
    for j in forward_journeys(c):
        for o in j.observations:
            if o.tuple5.dst == backend:
                return o
    return None


def _svc_text(s: Service, p: ServicePort) -> str:
    ips = ", ".join(s.cluster_ips) or "no ClusterIP"
    eps = (
        ", ".join(
            e.address
            + (f" (pod {e.pod}" + (f" on {e.node}" if e.node else "") + ")" if e.pod else "")
            + ("" if e.ready else " not ready")
            for e in s.endpoints
        )
        or "none"
    )
    np = f", nodePort {p.node_port}" if p.node_port else ""
    etp = (
        f", externalTrafficPolicy={s.external_traffic_policy}"
        if p.node_port or s.external_traffic_policy != "Cluster"
        else ""
    )
    target = f"->{p.target_port}" if p.target_port is not None else ""
    return f"manifest: Service {svc_name(s)} {ips} port {p.port}{target}{np}{etp}; endpoints: {eps}"


# --- what it says --------------------------------------------------------------------------------


def _rejected(s: _Seen) -> Finding | None:
    """REJECT: kube-proxy answers a SYN to a Service without endpoints with port unreachable."""
    if s.answered or not (s.rejects or (s.result is not None and s.result.verdict == "REJECT")):
        return None
    c, svc = s.c, s.svc
    evidence = [s.syn_line, *icmp_lines(s.rejects), s.svc_line]
    if s.rule_line:
        evidence.append(s.rule_line)
    title = (
        f"Service {s.name} has no endpoints: kube-proxy on {s.node or 'the node'} REJECTs "
        f'{c.client.dst} (ICMP port unreachable, "connection refused")'
        if not svc.endpoints
        else f"kube-proxy on {s.node or 'the node'} REJECTs {c.client.dst} of {s.name}"
    )
    return Finding(
        "error",
        4,
        title,
        tuple(evidence),
        f"kubectl get endpointslices -n {svc.namespace} -l kubernetes.io/service-name="
        f"{svc.name}; compare the Service's selector with its pods' labels (kubectl get "
        f"pods -n {svc.namespace} --show-labels) and check that they are Ready",
        ROOT,
    )


def _no_local_endpoint(s: _Seen) -> Finding | None:
    """externalTrafficPolicy=Local on a node without a local endpoint: DROP, no conntrack entry."""
    c, svc, node = s.c, s.svc, s.node
    local_policy = svc.external_traffic_policy == "Local" and s.port.node_port == c.client.dst.port
    if not local_policy or s.backend is not None or s.answered:
        return None
    if any(e.node == node for e in svc.endpoints):
        return None
    evidence = [
        s.syn_line + (f"; it reached {node} and nothing left {node} after it" if node else ""),
        s.svc_line,
    ]
    if s.info is not None and s.info.conntrack is not None and s.ct is None:
        evidence.append(
            f"nodes/{node}/conntrack.txt: no entry for {c.client} (a packet dropped in "
            "the filter table is never confirmed)"
        )
    if s.rule_line:
        evidence.append(s.rule_line)
    others = sorted({e.node for e in svc.endpoints if e.node})
    return Finding(
        "error",
        4,
        f"externalTrafficPolicy=Local: {node or 'the node'} has no local endpoint of "
        f"{s.name}, so kube-proxy DROPs {c.client.dst}",
        tuple(evidence),
        (f"send it to a node with an endpoint ({', '.join(others)}), " if others else "")
        + "or set externalTrafficPolicy: Cluster (the server then sees the node's "
        "address), or let the load balancer's health check (healthCheckNodePort) "
        "keep traffic off nodes without endpoints",
        ROOT,
    )


def _translated(f: RunFacts, s: _Seen, backend: Endpoint) -> list[Finding]:
    """The request was DNATed: to a stale endpoint, or where the node's saved rules say."""
    c = s.c
    dnat_line = (
        f"{obs_ref(s.dnat_at)}: DNAT {c.client.dst} -> {backend}"
        if s.dnat_at is not None
        else f"DNAT {c.client.dst} -> {backend}"
    )
    stale = _stale_endpoint(f, s, backend, dnat_line)
    if stale is not None:
        return [stale]
    pods = pod_addresses(f)
    who = f" (pod {pods[backend.ip]})" if backend.ip in pods else ""
    out = [
        Finding(
            "info",
            4,
            f"DNAT of {s.name} at {s.node or '?'}: {c.client.dst} -> {backend}{who}",
            tuple(x for x in (dnat_line, s.ct_line) if x),
        )
    ]
    if s.result is not None and s.result.verdict == "DNAT":
        out.append(_rules_agree(s, s.result, backend, dnat_line))
    return out


def _stale_endpoint(f: RunFacts, s: _Seen, backend: Endpoint, dnat_line: str) -> Finding | None:
    """A DNAT to an address nothing answers at: no pod has it, it is not among the Service's
    endpoints, or the network says the host is unreachable."""
    ep_addrs = {e.address for e in s.svc.endpoints}
    health_ips = {p.ip for p in f.health.pods if p.ip} if f.health is not None else None
    no_pod = health_ips is not None and backend.ip not in health_ips
    if s.answered or not (s.unreach or no_pod or backend.ip not in ep_addrs):
        return None
    evidence = [dnat_line, s.syn_line, *icmp_lines(s.unreach)]
    if s.ct_line:
        evidence.append(s.ct_line)
    if no_pod:
        evidence.append(f"API: no pod in the cluster has the address {backend.ip}")
    elif backend.ip not in ep_addrs:
        evidence.append(f"{backend.ip} is not among the Service's endpoints")
    evidence.append(s.svc_line)
    if s.rule_line:
        evidence.append(s.rule_line)
    node = s.node or "the node"
    return Finding(
        "error",
        4,
        f"Stale endpoint: kube-proxy on {node} DNATs {s.name} to "
        f"{backend}, and nothing answers at that address"
        + (" (ICMP host unreachable)" if s.unreach else ""),
        tuple(evidence),
        f"kubectl get pods -A -o wide | grep -w {backend.ip}: when no pod has it, the "
        "EndpointSlice or kube-proxy's rules are stale: check kube-controller-manager "
        f"(endpointslice controller) and kube-proxy's logs on {node}; "
        f"`conntrack -D -d {backend.ip}` clears entries already made",
        ROOT,
    )


def _rules_agree(s: _Seen, result: WalkResult, backend: Endpoint, dnat_line: str) -> Finding:
    """Do the node's saved rules DNAT the request to the backend the packets show?"""
    dst = s.c.client.dst
    allowed = {e.address for e in result.endpoints}
    if str(backend) in allowed:
        return Finding(
            "info",
            4,
            f"{s.node}'s saved rules agree: {dst} is DNATed to one of {', '.join(sorted(allowed))}",
            tuple(x for x in (s.rule_line,) if x),
        )
    return Finding(
        "warning",
        4,
        f"{s.node}'s saved rules DNAT {dst} to {', '.join(sorted(allowed))}, "
        f"but the packet went to {backend}",
        tuple(x for x in (dnat_line, s.rule_line, s.ct_line) if x),
        "the rules changed during the capture (a kube-proxy sync) or conntrack "
        "kept an older choice: conntrack -L -d " + dst.ip,
        SYMPTOM + 10,
    )


def _untranslated(s: _Seen) -> list[Finding]:
    """No DNAT: a Service without endpoints, or one kube-proxy did not translate at the node."""
    svc, node = s.svc, s.node
    if not svc.endpoints:
        return [
            Finding(
                "error",
                4,
                f"Service {s.name} has no endpoints",
                tuple(x for x in (s.syn_line, s.svc_line, s.rule_line) if x),
                f"kubectl get endpointslices -n {svc.namespace} -l kubernetes.io/service-name="
                f"{svc.name}",
                LOCATED,
            )
        ]
    if s.answered or s.first_node is None:
        return []
    evidence = [s.syn_line, s.svc_line]
    if s.result is not None:
        evidence.append(
            f"{node}'s saved rules: verdict {s.result.verdict}"
            + (f" ({s.rule_line})" if s.rule_line else "")
        )
    return [
        Finding(
            "warning",
            4,
            f"No DNAT seen for {s.name}: {s.c.client.dst} reached {node} untranslated",
            tuple(evidence),
            f"check kube-proxy on {node} (its logs, `iptables-save | grep {svc.name}`)",
            SYMPTOM + 20,
        )
    ]

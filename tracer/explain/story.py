"""Tell one run's request as a story, step by step, in the order of the three access paths.

ClusterIP: DNS lookup → the client sends to the ClusterIP → kube-proxy DNATs on node X (rule
path, probability, conntrack) → routed or carried over the VXLAN overlay → the pod → the reply.
NodePort: the external client → nodeIP:nodePort → DNAT (+ masquerade) → the pod.
Ingress: the external client → the controller (hostNetwork or behind a NodePort) → a new
connection to the backend → the pod. Where the request breaks, the story says where and why.

Every step names its evidence: the capture point and frame (numbered from 1, as Wireshark
does), the tuple, the rule text, the conntrack entry. Pure: takes a `StoryInput` (built by
`tracer.trace.story_input`) and returns a `Story` (tracer.report.story renders it). No I/O.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tracer.dnslookup import DnsExchange
from tracer.explain.evidence import PathEvidence, RewriteEvidence, inbound_redirect
from tracer.explain.facts import NodeFacts
from tracer.model import (
    CapturePoint,
    Connection,
    Hop,
    Journey,
    Observation,
    Path,
    Stitch,
)
from tracer.protocols.dns import DNS_PORTS
from tracer.rules.result import fraction_text
from tracer.rundir import Service


@dataclass(frozen=True)
class Leg:
    """One connection of the run with its path, summary, rule evidence and DNS messages."""

    connection: Connection
    path: Path
    evidence: PathEvidence
    summary: str = ""
    dns: tuple[DnsExchange, ...] = ()

    @property
    def is_dns(self) -> bool:
        return self.connection.client.dst.port in DNS_PORTS

    @property
    def is_icmp(self) -> bool:
        return self.connection.protocol.startswith("icmp")


@dataclass(frozen=True)
class StoryInput:
    run: str
    points: tuple[CapturePoint, ...]
    legs: tuple[Leg, ...]
    services: tuple[Service, ...] = ()
    facts: Mapping[str, NodeFacts] = field(default_factory=dict)
    request: Mapping[str, Any] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    # The L7 proxies the first request crossed, joining its connections (client first).
    stitches: tuple[Stitch, ...] = ()


@dataclass(frozen=True)
class Step:
    title: str
    lines: tuple[str, ...] = ()
    evidence: tuple[str, ...] = ()
    broken: bool = False


@dataclass(frozen=True)
class Story:
    access: str  # clusterip | nodeport | ingress | dns | direct | unknown
    steps: tuple[Step, ...]
    outcome: str
    warnings: tuple[str, ...] = ()


# --- small helpers -------------------------------------------------------------------------------


def _ms(ns: int | None) -> str:
    return "?" if ns is None else f"{ns / 1e6:.3f} ms"


def _at(hop: Hop) -> str:
    where = hop.point if not hop.interface or hop.role != "node" else f"{hop.point} {hop.interface}"
    frame = f" frame {hop.frame + 1}" if hop.frame is not None else ""
    return f"{where}{frame}"


def _hop_evidence(hop: Hop) -> str:
    return f"{_at(hop)}: {hop.tuple5} at +{_ms(hop.t_ns)}"


def _service_of(services: Sequence[Service], ep: str) -> tuple[Service, int | None] | None:
    """The Service whose ClusterIP:port or nodePort `ep` ("ip:port") is."""
    ip, _, port_s = ep.rpartition(":")
    port = int(port_s) if port_s.isdigit() else None
    for s in services:
        for p in s.ports:
            if ip in s.cluster_ips and p.port == port:
                return s, p.port
    return None


def _nodeport_service(services: Sequence[Service], port: int | None) -> Service | None:
    for s in services:
        if any(p.node_port == port for p in s.ports if p.node_port):
            return s
    return None


def _observation(conn: Connection, hop: Hop) -> Observation | None:
    for j in conn.journeys:
        for o in j.observations:
            if o.point == hop.point and o.frame == hop.frame:
                return o
    return None


def _answered(leg: Leg) -> bool:
    """Did the request get a reply? An ICMP error that quotes it is its way back, not a reply."""
    rev = leg.path.reverse
    if not rev:
        return False
    return leg.is_icmp or not rev[0].tuple5.proto.startswith("icmp")


def _retransmissions(conn: Connection) -> int:
    return sum(1 for j in conn.journeys if j.direction == "forward" and j.retransmission > 0)


def _first_kind(journeys: Sequence[Journey], direction: str) -> str:
    for j in journeys:
        if j.direction == direction:
            return j.kind.upper() if j.kind in ("syn", "syn-ack") else j.kind
    return "packet"


def _packet_name(leg: Leg, direction: str) -> str:
    kind = _first_kind(leg.connection.journeys, direction)
    if leg.is_dns:
        return "query" if direction == "forward" else "answer"
    if leg.connection.protocol == "udp":
        return "datagram"
    return kind if kind in ("SYN", "SYN-ACK") else "packet"


def _key_rules(ev: RewriteEvidence) -> list[str]:
    """The rules worth quoting in a story: kube-proxy's commented ones and the rewrite itself."""
    out = []
    for r in ev.rules:
        if r.table not in ("nat", "ip kube-proxy", "kube-proxy"):
            continue
        post = "POSTROUTING" in r.chain or r.chain in ("nat-postrouting", "masquerading")
        if post and not ev.masquerade:
            continue  # the masquerade rules only matter when the mark was set
        if r.comment or "DNAT" in r.rule or "MASQUERADE" in r.rule or "dnat to" in r.rule:
            out.append(f"[{r.table} {r.chain}] {r.rule}")
    return out or [f"[{r.table} {r.chain}] {r.rule}" for r in ev.rules]


# --- steps ----------------------------------------------------------------------------------


def _dns_steps(legs: Sequence[Leg], services: Sequence[Service]) -> list[Step]:
    if not legs:
        return []
    exchanges = [x for leg in legs for x in leg.dns]
    first = legs[0]
    server = first.connection.client.dst
    svc = _service_of(services, str(server))
    who = f" (Service {svc[0].namespace}/{svc[0].name})" if svc else ""
    lines = [f"{first.connection.client.src.ip} asks {server}{who}:"]
    evidence: list[str] = []
    names = list(dict.fromkeys(x.query.qname for x in exchanges))
    for x in exchanges:
        q = x.query
        if x.answer is None:
            got = "no answer"
        elif x.answer.rcode != 0:
            got = x.answer.rcode_name
        else:
            vals = [t for ty, t in x.answer.answers if ty == q.qtype] or [
                t for _, t in x.answer.answers
            ]
            got = (", ".join(vals) or "no records") + f" ({x.answer.rcode_name})"
        lines.append(f"  {q.qtype_name:<5} {q.qname} → {got}")
        ans = f", answer frame {x.answer_frame + 1}" if x.answer_frame is not None else ""
        evidence.append(f"{x.point} frame {x.query_frame + 1}{ans}: {q.qtype_name} {q.qname}")
    if len(names) > 1:
        lines.append(
            "  the resolver walks its search list (resolv.conf `search`): " + ", ".join(names)
        )
    if not exchanges:
        lines.append(f"  (the DNS payload was not captured; {first.summary or 'no summary'})")
    for leg in legs[:1]:
        for ev in leg.evidence.rewrites:
            if ev.direction == "forward" and "DNAT" in ev.kind and ev.after is not None:
                lines.append(
                    f"  kube-proxy on {ev.node} DNATs the query to {ev.after.dst}"
                    f" ({ev.rules_source or 'no rules captured'})"
                )
                break
    answered = [x for x in exchanges if x.answer is not None and x.answer.rcode == 0]
    broken = bool(exchanges) and not answered
    return [Step("DNS lookup", tuple(lines), tuple(evidence), broken)]


def _rewrite_step(ev: RewriteEvidence, hops: Sequence[Hop]) -> Step:
    hop = hops[ev.hop] if 0 <= ev.hop < len(hops) else None
    after = ev.after
    lines: list[str] = []
    title = f"{ev.kind} by kube-proxy on {ev.node}"
    if ev.kind == "REDIRECT":
        title = f"REDIRECT to the sidecar by {ev.node}'s own rules (istio-iptables)"
    elif ev.by == "socket":
        title = f"DNAT in {ev.node}'s socket, before the wire (socket load-balancer)"
    if after is not None and "DNAT" in ev.kind:
        n = len(ev.endpoints)
        prob = (
            f" (probability {fraction_text(ev.chosen_probability)} among {n} endpoint"
            f"{'s' if n != 1 else ''})"
            if ev.chosen_probability is not None
            else ""
        )
        svc = f" for Service {ev.service}" if ev.service else ""
        lines.append(f"{ev.before.dst} is rewritten to {after.dst}{svc}{prob}")
    if after is not None and "SNAT" in ev.kind:
        lines.append(
            f"the source {ev.before.src} is masqueraded to {after.src}: the pod sees the node,"
            " and the reply must come back through it"
        )
    elif ev.masquerade is False:
        lines.append(f"no masquerade: the pod sees the client's address {ev.before.src.ip}")
    if after is not None and ev.kind == "REDIRECT":
        lines.append(f"{ev.before.dst} is redirected to {after.dst}, where the sidecar listens")
    if ev.entry == "local" and (ev.rules_source or "").startswith("pods/"):
        lines.append("the packet was sent by a process in the pod, so it met the pod's nat OUTPUT")
    elif ev.entry == "local":
        lines.append("the packet was sent from the node itself, so it met nat OUTPUT")
    lines.extend(ev.notes)
    evidence: list[str] = []
    if hop is not None:
        evidence.append(_hop_evidence(hop))
    if ev.rules_source:
        evidence.append(f"rules {ev.rules_source}:")
        evidence.extend("  " + r for r in _key_rules(ev))
    if ev.conntrack is not None:
        evidence.append(f"conntrack on {ev.node}: {ev.conntrack.text}")
    for f in ev.findings:
        lines.append(f"FINDING: {f.message}")
    return Step(title, tuple(lines), tuple(evidence), bool(ev.findings))


def _transit_step(leg: Leg, start: int) -> Step | None:
    hops = leg.path.forward
    rest = hops[start:]
    if len(rest) < 2:
        return None
    nodes = list(dict.fromkeys(h.node for h in rest if h.role == "node" and h.node))
    vxlan = False
    for h in rest:
        o = _observation(leg.connection, h)
        if o is not None and "vxlan" in o.encap:
            vxlan = True
    ifaces = [f"{h.point} {h.interface}" for h in rest if h.role == "node" and h.interface]
    if len(nodes) > 1:
        how = "over the VXLAN overlay (UDP 8472)" if vxlan else "routed"
        title = f"{nodes[0]} → {nodes[-1]} {how}"
    elif nodes and rest[-1].role == "node" and _answered(leg):
        title = f"{nodes[0]} takes it itself: a process in the node's own network listens on {rest[-1].tuple5.dst}"
    elif nodes:
        title = f"{nodes[0]} forwards it to the pod's interface"
    else:
        title = "across the network"
    lines = ["through " + " → ".join(dict.fromkeys(ifaces))] if ifaces else []
    if vxlan:
        lines.append(
            "on the underlay the packet is encapsulated: outer UDP 8472 between the node"
            " addresses, the pod tuple inside"
        )
    evidence = [_hop_evidence(h) for h in rest if h.role == "node"]
    return Step(title, tuple(lines), tuple(evidence))


def _arrival_step(leg: Leg) -> Step | None:
    last = leg.path.forward[-1] if leg.path.forward else None
    if last is None or last.role not in ("server", "ingress", "dns"):
        return None
    what = "the controller" if last.role == "ingress" else "the pod"
    return Step(
        f"{last.point} ({what}) receives the {_packet_name(leg, 'forward')}",
        (f"{last.tuple5} at +{_ms(last.t_ns)}",),
        (_hop_evidence(last),),
    )


def _handover_step(leg: Leg, st: Stitch | None, mesh: bool = False) -> Step:
    """The L7 proxy ends the client's connection and sends the same request on a new one."""
    src = leg.path.forward[0].point if leg.path.forward else "the controller"
    local = bool(leg.evidence.rewrites) and leg.evidence.rewrites[0].entry == "local"
    how = (
        "hostNetwork controller: it connects from the node's own address"
        if local
        else "the controller connects from its pod address"
    )
    if mesh:
        sent = leg.connection.client.src.ip
        how = (
            "the sidecar connects to the app over the pod's loopback from 127.0.0.6, the source"
            " its capture rules let through"
            if sent == "127.0.0.6"
            else "the sidecar connects from the pod's address as its own user (UID 1337),"
            " which its capture rules exempt"
        )
    if st is None:
        return Step(
            "The controller opens a new connection to the backend",
            (
                f"the client's connection ends at the controller; {src} sends"
                f" {leg.connection.client}",
                how,
                "(joined to the client's connection by time and address only)",
            ),
        )
    lines = [
        f"the client's connection #{st.client_leg} ends at {st.proxy}; it sends the same request"
        f" on as connection #{st.server_leg}: {leg.connection.client}",
        how,
        f"one request across both connections, confidence {st.confidence}: {'; '.join(st.reasons)}",
    ]
    if st.proxy_ns is not None:
        lines.append(
            f"time inside the proxy: {_ms(st.proxy_ns)} (request in to out + response in to out)"
        )
    return Step(f"The L7 proxy {st.proxy} hands the request on to the backend", tuple(lines))


def _reply_step(leg: Leg, title: str = "The reply goes back the same way") -> Step | None:
    rev = leg.path.reverse
    if not rev or not _answered(leg):
        return None
    first, last = rev[0], rev[-1]
    lines = [f"{first.point} answers with {_packet_name(leg, 'reverse')} {first.tuple5}"]
    evidence = [_hop_evidence(first)]
    for ev in leg.evidence.rewrites:
        if ev.direction == "reverse" and ev.after is not None:
            lines.append(f"conntrack on {ev.node} rewrites it ({ev.kind}) to {ev.after}")
            if ev.conntrack is not None:
                evidence.append(f"conntrack on {ev.node}: {ev.conntrack.text}")
            h = rev[ev.hop]
            evidence.append(_hop_evidence(h))
    lines.append(f"{last.point} receives {last.tuple5} at +{_ms(last.t_ns)}")
    evidence.append(_hop_evidence(last))
    return Step(title, tuple(lines), tuple(evidence))


def _break_step(leg: Leg, icmp: Sequence[Leg]) -> Step | None:
    """Where the request stops, when it got no reply."""
    if _answered(leg):
        return None
    fwd = leg.path.forward
    last = fwd[-1] if fwd else None
    lines: list[str] = []
    evidence: list[str] = []
    if last is not None:
        lines.append(f"the {_packet_name(leg, 'forward')} is last seen at {_at(last)}")
        evidence.append(_hop_evidence(last))
    n = _retransmissions(leg.connection)
    if n:
        lines.append(f"the client sends it {n} more time{'s' if n != 1 else ''} (retransmission)")
    for f in leg.evidence.all_findings:
        lines.append(f"FINDING: {f.message}")
    client_ip = leg.connection.client.src.ip
    for il in icmp:
        if il.connection.client.dst.ip != client_ip and all(
            t.dst.ip != client_ip for _, t in il.connection.tuples
        ):
            continue
        hop = il.path.forward[0] if il.path.forward else None
        text = il.summary or "ICMP error"
        lines.append(f"{il.connection.client.src.ip} answers the client with {text}")
        if hop is not None:
            evidence.append(_hop_evidence(hop))
    unreachable = any("host-unreachable" in il.summary for il in icmp)
    for ev in leg.evidence.rewrites:
        if ev.chosen and unreachable and not leg.evidence.all_findings:
            lines.append(
                f"FINDING: nothing answers at {ev.chosen}: the node in front of it reports"
                " host unreachable, so the endpoint kube-proxy chose is stale (its pod is gone"
                " but the rules still name it)"
            )
            break
    for ev in leg.evidence.rewrites:
        ct = ev.conntrack
        if ct is not None and "UNREPLIED" in ct.flags:
            lines.append(
                f"conntrack on {ev.node} has the connection {ct.state or ''} [UNREPLIED]:"
                f" {ev.chosen or ct.reply.src} never answered"
            )
            evidence.append(f"conntrack on {ev.node}: {ct.text}")
    return Step("Where it breaks", tuple(lines), tuple(evidence), broken=True)


def _leg_steps(leg: Leg, services: Sequence[Service], first_title: str) -> list[Step]:
    fwd = leg.path.forward
    steps: list[Step] = []
    if not fwd:
        return steps
    start = fwd[0]
    dst = leg.connection.client.dst
    # What the client asked for: before its sidecar's REDIRECT or its socket's translation.
    svc = _service_of(services, leg.path.request.destination) or _service_of(services, str(dst))
    np = _nodeport_service(services, dst.port)
    asked = leg.path.request.destination
    if svc is not None and asked != str(dst):
        what = f" — it asked for {asked}, the ClusterIP of Service {svc[0].namespace}/{svc[0].name}"
    elif svc is not None:
        what = f" — the ClusterIP of Service {svc[0].namespace}/{svc[0].name}"
    elif np is not None and any(
        "KUBE-NODEPORTS" in r.chain for e in leg.evidence.rewrites for r in e.rules
    ):
        what = f" — a NodePort of Service {np.namespace}/{np.name}"
    elif np is not None:
        what = f" — nodePort {dst.port} (Service {np.namespace}/{np.name})"
    else:
        what = ""
    steps.append(
        Step(
            first_title.format(client=start.point),
            (f"{_packet_name(leg, 'forward')} {start.tuple5}{what}",),
            (_hop_evidence(start),),
        )
    )
    after = 0
    stopped = False
    for ev in leg.evidence.rewrites:
        if ev.direction != "forward":
            continue
        if ev.kind == "none":
            if ev.verdict in ("DROP", "REJECT") or ev.findings:
                steps.append(_rewrite_step_none(ev, fwd))
                stopped = ev.verdict in ("DROP", "REJECT")
            continue
        steps.append(_rewrite_step(ev, fwd))
        after = max(after, ev.hop)
    transit = None if stopped else _transit_step(leg, after)
    if transit is not None:
        steps.append(transit)
    arrival = _arrival_step(leg)
    if arrival is not None:
        steps.append(arrival)
    return steps


def _rewrite_step_none(ev: RewriteEvidence, hops: Sequence[Hop]) -> Step:
    hop = hops[ev.hop] if 0 <= ev.hop < len(hops) else None
    lines = [f"the rules on {ev.node} {ev.verdict} {ev.before}"]
    evidence = [_hop_evidence(hop)] if hop else []
    if ev.rules_source:
        evidence.append(f"rules {ev.rules_source}:")
        evidence.extend(f"  [{r.table} {r.chain}] {r.rule}" for r in ev.rules)
    return Step(f"kube-proxy's rules on {ev.node}", tuple(lines), tuple(evidence), True)


def _access(primary: Leg | None, others: Sequence[Leg], inp: StoryInput) -> str:
    if primary is None:
        return "dns"
    for ev in primary.evidence.rewrites:
        if ev.direction == "forward" and ev.hop == 0 and ev.kind == "REDIRECT":
            return "mesh"
        if ev.by == "socket":
            return "socket-lb"
    if others:
        return "ingress"
    for ev in primary.evidence.rewrites:
        if any("NODEPORTS" in r.chain.upper() or "nodeport" in r.chain for r in ev.rules):
            return "nodeport"
    dst = primary.connection.client.dst
    if _service_of(inp.services, str(dst)) is not None:
        return "clusterip"
    if _nodeport_service(inp.services, dst.port) is not None:
        return "nodeport"
    if any("DNAT" in ev.kind for ev in primary.evidence.rewrites):
        return "clusterip"
    return "direct"


def _outcome(primary: Leg | None, legs: Sequence[Leg], dns: Sequence[Leg], reason: str = "") -> str:
    if primary is None:
        xs = [x for leg in dns for x in leg.dns]
        if xs and all(x.answer is not None and x.answer.rcode == 3 for x in xs):
            names = ", ".join(dict.fromkeys(x.query.qname for x in xs))
            return f"every lookup answered NXDOMAIN ({names}): the name does not exist, so no request was sent"
        return "no request beyond DNS was captured"
    last = legs[-1]
    if not _answered(last) or not _answered(primary):
        broken = last if not _answered(last) else primary
        fwd = broken.path.forward
        where = _at(fwd[-1]) if fwd else "?"
        finding = next(iter(broken.evidence.all_findings), None)
        why = f": {finding.message}" if finding is not None else ""
        if not why and reason:
            why = f": {reason}"
        return f"the request breaks after {where}{why}"
    summary = primary.summary or last.summary or "answered"
    lat = last.path.latency
    total = primary.path.latency.total_ns
    text = f"{summary}" + (f" in {_ms(total)}" if total is not None else "")
    if lat.server_ns is not None and total and lat.server_ns * 2 > total:
        text += f"; {_ms(lat.server_ns)} of it inside the server {last.path.forward[-1].point}"
    return text


def tell_story(inp: StoryInput) -> Story:
    """The story of the run's request (see the module docstring)."""
    legs = sorted(inp.legs, key=lambda leg: leg.connection.start_ns)
    app = [leg for leg in legs if not leg.is_dns and not leg.is_icmp]
    icmp = [leg for leg in legs if leg.is_icmp]
    primary = app[0] if app else None
    by_index = {leg.connection.index: leg for leg in app}
    handed: dict[int, Stitch] = {}  # server leg index -> the stitch that joined it
    if inp.stitches and inp.stitches[0].client_leg in by_index:
        # The proxy's legs, as the request crossed them (joined on the HTTP request and time).
        primary = by_index[inp.stitches[0].client_leg]
        handed = {s.server_leg: s for s in inp.stitches if s.server_leg in by_index}
        others = [by_index[k] for k in handed]
    else:
        others = [
            leg
            for leg in app[1:]
            if primary is not None
            and leg.connection.client.src.ip != primary.connection.client.src.ip
        ]
    dns = [
        leg
        for leg in legs
        if leg.is_dns
        and (primary is None or leg.connection.start_ns <= primary.connection.start_ns)
    ]
    access = _access(primary, others, inp)
    mesh = access == "mesh"
    steps: list[Step] = []
    steps.extend(_dns_steps(dns, inp.services))
    if primary is not None:
        first = "{client} sends the request"
        if access == "ingress":
            first = "{client} connects to the ingress controller"
        elif access == "mesh":
            first = "{client}'s app connects to the Service (its sidecar will take it)"
        steps.extend(_leg_steps(primary, inp.services, first))
        broken = _break_step(primary, icmp)
        if broken is not None:
            steps.append(broken)
        proxy = "sidecar" if mesh else "controller"
        for leg in others:
            st = handed.get(leg.connection.index)
            came = by_index.get(st.client_leg) if st is not None else None
            if mesh and came is not None and came.path.forward:
                redirect = inbound_redirect(came.path, len(came.path.forward) - 1, inp.facts)
                if redirect is not None:
                    steps.append(_rewrite_step(redirect, came.path.forward))
            steps.append(_handover_step(leg, st, mesh))
            steps.extend(_leg_steps(leg, inp.services, "{client} sends the backend request"))
            b = _break_step(leg, icmp)
            if b is not None:
                steps.append(b)
            reply = _reply_step(leg, f"The backend's reply goes back to the {proxy}")
            if reply is not None:
                steps.append(reply)
        title = f"The {proxy} answers the client" if others else "The reply goes back the same way"
        reply = _reply_step(primary, title)
        if reply is not None:
            steps.append(reply)
    reasons = [
        line[len("FINDING: ") :]
        for st in steps
        if st.title == "Where it breaks"
        for line in st.lines
        if line.startswith("FINDING: ")
    ]
    outcome = _outcome(
        primary, [primary, *others] if primary else [], dns, reasons[0] if reasons else ""
    )
    proxy_ns = [s.proxy_ns for s in handed.values() if s.proxy_ns is not None]
    if proxy_ns and primary is not None and _answered(primary):
        where = ", ".join(dict.fromkeys(s.proxy for s in handed.values()))
        outcome += f"; {_ms(sum(proxy_ns))} of it inside the L7 proxy {where}"
    return Story(access, tuple(steps), outcome, inp.warnings)

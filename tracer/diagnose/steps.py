"""The six troubleshooting steps, as pure functions from `RunFacts` to findings.

Step 1 nodes & pods (health facts), 2 the backend's golden signals, 3 DNS, 4 the Service and
kube-proxy (endpoints, DNAT, REJECT/DROP, stale targets, externalTrafficPolicy=Local, the node's
own rules), 5 the Ingress controller, 6 the path of the request (where it was last seen, where
the time went). Each step returns findings with their evidence (point and Wireshark frame
number, tuple, rule text, conntrack line, API object) and the next thing to try; `diagnose`
orders them. No I/O here: everything comes in through `RunFacts`.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from urllib.parse import urlsplit

from tracer.correlate.path import local_redirect
from tracer.diagnose.conntrack_stats import step_conntrack_stats
from tracer.diagnose.model import (
    SEVERITIES,
    Diagnosis,
    Finding,
    HttpEvent,
    IcmpError,
    NodeInfo,
    RunFacts,
)
from tracer.dnslookup import DnsLookup, DnsQuery
from tracer.errors import PathtraceError
from tracer.health import PRESSURE_CONDITIONS, HealthFacts, PodHealth
from tracer.model import (
    CapturePoint,
    Connection,
    Endpoint,
    Journey,
    Observation,
    Translation,
    Tuple5,
)
from tracer.protocols.dns import DNS_PORTS
from tracer.rules import Node, Packet, WalkResult, walk
from tracer.rules.cilium import walk_cilium
from tracer.rules.conntrack import ConntrackEntry
from tracer.rules.explain_text import local_traffic_cidr
from tracer.rules.model import Entry, in_network
from tracer.rundir import Manifest, Service, ServicePort
from tracer.words import count

SLOW_MS = 100.0  # a server time or segment above this is worth a warning
MS = 1_000_000

# Weights: a root cause outranks the symptoms it causes in other steps.
ROOT = 100
LOCATED = 90
SLOW = 80
SYMPTOM = 50
NOTE = 0

# ICMP errors (RFC 792, RFC 4443): (type, code) for IPv4 and IPv6.
_PORT_UNREACH = {(3, 3), (1, 4)}
_HOST_UNREACH = {(3, 0), (3, 1), (1, 0), (1, 3)}


# --- small helpers --------------------------------------------------------------------------------


def frame_ref(point: str, frame: int) -> str:
    """`client frame 6`: the frame number as Wireshark shows it (1-based)."""
    return f"{point} frame {frame + 1}"


def _obs_ref(o: Observation) -> str:
    where = ", ".join(x for x in (o.interface, o.direction) if x)
    return f"{frame_ref(o.point, o.frame)}" + (f" ({where})" if where else "")


def _ms(ns: int | float) -> str:
    return f"{ns / MS:.1f} ms" if abs(ns) >= MS / 10 else f"{ns / MS:.3f} ms"


def _is_dns_conn(c: Connection) -> bool:
    ports = {t.dst.port for _, t in c.tuples} | {c.client.dst.port}
    return bool(DNS_PORTS.intersection(p for p in ports if p is not None))


def app_connections(f: RunFacts) -> list[Connection]:
    return [
        c for c in f.connections if c.protocol in ("tcp", "udp", "sctp") and not _is_dns_conn(c)
    ]


def backend_of(c: Connection) -> Endpoint | None:
    """Where the request went after the last DNAT, or None when it was never translated."""
    if c.backend is not None and c.backend != c.client.dst:
        return c.backend
    return None


def forward_journeys(c: Connection, kind: str | None = None) -> list[Journey]:
    return [j for j in c.journeys if j.direction == "forward" and (kind is None or j.kind == kind)]


def replied(c: Connection) -> bool:
    """True when anything came back from the server side (an ICMP error is not an answer)."""
    return any(j.direction == "reverse" for j in c.journeys)


def related_icmp(f: RunFacts, c: Connection) -> list[IcmpError]:
    """ICMP errors quoting one of the connection's tuples (at any point, before or after NAT)."""
    tuples = {c.client, *(t for _, t in c.tuples)}
    return [e for e in f.icmp if e.quoted is not None and e.quoted in tuples]


def _icmp_line(e: IcmpError) -> str:
    seen = ", ".join(frame_ref(p, n) for p, n in e.seen) or frame_ref(e.point, e.frame)
    quoted = f" quoting {e.quoted}" if e.quoted is not None else ""
    return f"{seen}: ICMP {e.name} from {e.src}{quoted}"


def icmp_lines(errors: Sequence[IcmpError], limit: int = 4) -> list[str]:
    """One line per distinct ICMP error (sender, type, quoted tuple), with how many were sent."""
    groups: dict[tuple[str, str, Tuple5 | None], list[IcmpError]] = {}
    for e in errors:
        groups.setdefault((e.src, e.name, e.quoted), []).append(e)
    out = []
    for same in list(groups.values())[:limit]:
        line = _icmp_line(same[0])
        out.append(line + (f" (and {len(same) - 1} more like it)" if len(same) > 1 else ""))
    return out


def find_service(m: Manifest, ep: Endpoint) -> tuple[Service, ServicePort] | None:
    """The Service (and port) a destination belongs to: a ClusterIP:port or a NodePort."""
    for s in m.services:
        if ep.ip in s.cluster_ips:
            for p in s.ports:
                if p.port == ep.port:
                    return s, p
    cluster_ips = {ip for s in m.services for ip in s.cluster_ips}
    if ep.ip not in cluster_ips:
        for s in m.services:
            for p in s.ports:
                if p.node_port is not None and p.node_port == ep.port:
                    return s, p
    return None


def _svc_name(s: Service) -> str:
    return f"{s.namespace}/{s.name}"


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
    return (
        f"manifest: Service {_svc_name(s)} {ips} port {p.port}{target}{np}{etp}; endpoints: {eps}"
    )


def pod_addresses(f: RunFacts) -> dict[str, str]:
    """IP -> pod name, from the manifest's endpoints and the cluster's pod list."""
    out: dict[str, str] = {}
    for s in f.manifest.services:
        for e in s.endpoints:
            if e.pod:
                out.setdefault(e.address, e.pod)
    if f.health is not None:
        for p in f.health.pods:
            if p.ip:
                out[p.ip] = f"{p.namespace}/{p.name}"
    return out


def _point(f: RunFacts, name: str) -> CapturePoint | None:
    for p in f.manifest.points:
        if p.name == name:
            return p
    return None


def _role(f: RunFacts, name: str) -> str:
    p = _point(f, name)
    return p.role if p is not None else ""


def _node_of(f: RunFacts, point: str) -> str | None:
    p = _point(f, point)
    return p.node if p is not None else None


def _pod_cidr(info: NodeInfo | None) -> str | None:
    return local_traffic_cidr(info.rules) if info is not None and info.rules is not None else None


def _entry(src_ip: str, info: NodeInfo) -> Entry:
    if src_ip in info.addresses:
        return "local"
    cidr = _pod_cidr(info)
    if cidr is not None and in_network(src_ip, cidr):
        return "from_pod"
    return "external" if cidr is not None else "from_pod"


def _family(t: Tuple5) -> int:
    return 6 if ":" in t.dst.ip else 4


def walk_node(info: NodeInfo | None, t: Tuple5) -> WalkResult | None:
    """Walk one packet through a node's saved rules of its family; None without rules or for a
    bad tuple."""
    if info is not None:
        info = info.for_family(_family(t))
    if info is None or info.rules is None or t.dst.port is None:
        return None
    if t.proto not in ("tcp", "udp", "sctp"):
        return None
    packet = Packet(t.proto, t.src, t.dst, _entry(t.src.ip, info))
    try:
        return walk(info.rules, packet, Node(info.addresses, _pod_cidr(info)))
    except PathtraceError:  # rules that cannot be walked are no evidence, not a failure
        return None


def stop_rule(result: WalkResult) -> str | None:
    """The rule that decided a DROP/REJECT, or the DNAT rule, as it reads in the dump."""
    for hit in reversed(result.rules):
        if re.search(r"-j (DROP|REJECT|DNAT)\b|\b(drop|reject|dnat to)\b", hit.rule):
            return hit.rule
    return None


def conntrack_for(info: NodeInfo | None, t: Tuple5) -> ConntrackEntry | None:
    if info is None or info.conntrack is None:
        return None
    for e in info.conntrack.entries:
        o = e.original
        if (o.proto, o.src, o.dst) == (t.proto, t.src, t.dst):
            return e
    return None


def _percentile(values: Sequence[int], q: float) -> int:
    """Nearest-rank percentile (no interpolation: every value reported was measured)."""
    s = sorted(values)
    return s[max(0, math.ceil(q / 100 * len(s)) - 1)]


def _main(f: RunFacts) -> Connection | None:
    if f.main is None:
        return None
    for c in f.connections:
        if c.index == f.main:
            return c
    return None


def _wanted_host(m: Manifest) -> str | None:
    """The host name the request asked for (the URL in the request's command), if any."""
    argv = m.request.get("command") or m.request.get("argv") or []
    for word in argv if isinstance(argv, list) else str(argv).split():
        if "://" in str(word):
            host = urlsplit(str(word)).hostname
            if host:
                try:
                    ipaddress.ip_address(host)
                    return None  # an address needs no lookup
                except ValueError:
                    return host.rstrip(".").lower()
    return None


# --- step 1: nodes and pods ------------------------------------------------------------------------


def _on_path_pods(f: RunFacts) -> set[str]:
    names = {
        f"{p.namespace}/{p.pod}" for p in f.manifest.points if p.pod and p.namespace is not None
    }
    for s in f.manifest.services:
        names |= {e.pod for e in s.endpoints if e.pod}
    return names


def _pod_problems(p: PodHealth) -> list[str]:
    out: list[str] = []
    if p.phase not in ("Running", "Succeeded"):
        out.append(f"phase {p.phase}" + (f" ({p.reason})" if p.reason else ""))
    elif p.phase == "Running" and not p.ready:
        waiting = [f"{c.name}: {c.state}" for c in p.containers if c.state != "running"]
        out.append("not ready" + (f" ({'; '.join(waiting)})" if waiting else ""))
    return out


def step_health(f: RunFacts) -> list[Finding]:
    h: HealthFacts | None = f.health
    if h is None:
        return [
            Finding(
                "info",
                1,
                "No node or pod health facts in this run",
                ("RUN/cluster/health.json is absent (a lab or imported run)",),
                "on a cluster, `pathtrace capture` (or `pathtrace diagnose --from … --to …`) "
                "saves them; or check `kubectl get nodes` and `kubectl get pods -A`",
            )
        ]
    out: list[Finding] = []
    for n in h.nodes:
        if n.ready is not True:
            cond = next((c for c in n.conditions if c.type == "Ready"), None)
            why = (
                f" ({cond.reason}: {cond.message})"
                if cond and (cond.reason or cond.message)
                else ""
            )
            out.append(
                Finding(
                    "error",
                    1,
                    f"Node {n.name} is not Ready{why}",
                    (f"API: node/{n.name} condition Ready={cond.status if cond else 'absent'}",),
                    f"kubectl describe node {n.name}; check the kubelet and the container runtime "
                    "on it",
                    LOCATED,
                )
            )
        for c in n.conditions:
            if c.type in PRESSURE_CONDITIONS and c.status == "True":
                out.append(
                    Finding(
                        "warning",
                        1,
                        f"Node {n.name} reports {c.type}",
                        (f"API: node/{n.name} condition {c.type}=True ({c.reason or ''})",),
                        f"kubectl describe node {n.name}; free the resource or move pods away",
                        SYMPTOM + 10,
                    )
                )
    on_path = _on_path_pods(f)
    others_bad: list[str] = []
    for p in h.pods:
        ref = f"{p.namespace}/{p.name}"
        important = ref in on_path or p.component is not None
        what = {"kube-proxy": "kube-proxy pod ", "dns": "cluster DNS pod "}.get(
            p.component or "", "pod "
        )
        problems = _pod_problems(p)
        api = f"API: pod/{ref} on {p.node or '?'}: phase {p.phase}, ready {p.ready}, " + (
            ", ".join(f"{c.name} {c.state} restarts {c.restarts}" for c in p.containers)
            or "no container statuses"
        )
        if problems:
            if important:
                out.append(
                    Finding(
                        "error",
                        1,
                        f"The {what}{ref} is {'; '.join(problems)}",
                        (api,),
                        f"kubectl describe pod -n {p.namespace} {p.name}; kubectl logs -n "
                        f"{p.namespace} {p.name} --previous",
                        LOCATED - 5,
                    )
                )
            else:
                others_bad.append(f"{ref} ({'; '.join(problems)})")
        oom = p.oom_killed
        if oom and important:
            out.append(
                Finding(
                    "warning",
                    1,
                    f"The {what}{ref} was OOMKilled ({', '.join(oom)})",
                    (api,),
                    "raise the container's memory limit or find what grows: kubectl top pod "
                    f"-n {p.namespace} {p.name}",
                    SYMPTOM + 10,
                )
            )
        elif p.restarts and important:
            last = ", ".join(
                f"{c.name}: last {c.last_reason or 'exit'} {c.last_exit_code or ''}".strip()
                for c in p.containers
                if c.restarts
            )
            out.append(
                Finding(
                    "warning",
                    1,
                    f"The {what}{ref} restarted {count(p.restarts, 'time')} ({last})",
                    (api,),
                    f"kubectl logs -n {p.namespace} {p.name} --previous",
                    SYMPTOM - 10,
                )
            )
    ebpf_lb = f.before_wire is not None or any(n.cilium is not None for n in f.nodes.values())
    if not any(p.component == "kube-proxy" for p in h.pods) and not ebpf_lb:
        out.append(
            Finding(
                "info",
                1,
                "No kube-proxy pod found",
                ("API: no pod labelled k8s-app=kube-proxy in the namespaces read",),
                "kube-proxy may run as a systemd service, or be replaced (Cilium, Calico eBPF): "
                "then the node's KUBE-* rules are not where the Service is translated",
            )
        )
    if others_bad:
        out.append(
            Finding(
                "info",
                1,
                f"{count(len(others_bad), 'pod')} off the path "
                f"{'is' if len(others_bad) == 1 else 'are'} not healthy",
                tuple(others_bad[:10]),
                "kubectl get pods -A | grep -v Running",
            )
        )
    if h.metrics is not None and h.node_capacity:
        for u in h.metrics:
            cap = h.node_capacity.get(u.name) if u.kind == "node" else None
            if cap is None:
                continue
            cpu = u.cpu_millicores / cap[0] if cap[0] else 0.0
            mem = u.memory_bytes / cap[1] if cap[1] else 0.0
            if cpu >= 0.9 or mem >= 0.9:
                out.append(
                    Finding(
                        "warning",
                        1,
                        f"Node {u.name} is near its limits: CPU {cpu:.0%}, memory {mem:.0%}",
                        (
                            f"metrics.k8s.io: node/{u.name} cpu {u.cpu_millicores}m of "
                            f"{cap[0]}m, memory {u.memory_bytes >> 20} MiB of {cap[1] >> 20} MiB",
                        ),
                        f"kubectl top pods -A --sort-by=cpu; kubectl describe node {u.name}",
                        SYMPTOM,
                    )
                )
    if not any(x.severity != "info" for x in out):
        ready = sum(1 for n in h.nodes if n.ready)
        out.append(
            Finding(
                "info",
                1,
                f"Nodes and pods look healthy: {ready}/{len(h.nodes)} nodes Ready, "
                f"{len(h.pods)} pods read, none on the path restarting or not ready",
                (f"cluster/health.json collected {h.collected}",)
                + (("metrics.k8s.io not served: no usage figures",) if h.metrics is None else ()),
            )
        )
    return out


# --- step 2: the backend's golden signals -----------------------------------------------------------


@dataclass(frozen=True)
class _Signals:
    backend: str
    connections: int
    requests: int
    errors: tuple[str, ...]
    server_ns: tuple[int, ...]


def _http_by_connection(f: RunFacts) -> dict[tuple[int, str], list[HttpEvent]]:
    """The HTTP events by (connection, direction): looked up per connection, not scanned."""
    out: dict[tuple[int, str], list[HttpEvent]] = {}
    for e in f.http:
        out.setdefault((e.connection, e.direction), []).append(e)
    return out


def step_backend(f: RunFacts) -> list[Finding]:
    pods = pod_addresses(f)
    http = _http_by_connection(f)
    groups: dict[str, list[Connection]] = {}
    for c in app_connections(f):
        b = backend_of(c)
        key = str(b if b is not None else c.client.dst)
        groups.setdefault(key, []).append(c)
    if not groups:
        return []
    out: list[Finding] = []
    for key, conns in groups.items():
        errors: list[str] = []
        server: list[int] = []
        requests = 0
        for c in conns:
            reqs = http.get((c.index, "forward"), [])
            resps = http.get((c.index, "reverse"), [])
            requests += len(reqs) or (1 if any(j.kind == "data" for j in c.journeys) else 0)
            for e in resps:
                if e.status is not None and e.status >= 500:
                    errors.append(f"#{c.index}: HTTP {e.status} ({frame_ref(e.point, e.frame)})")
            for j in c.journeys:
                if j.kind == "rst":
                    o = j.observations[0]
                    errors.append(f"#{c.index}: TCP reset {o.tuple5} ({_obs_ref(o)})")
                    break
            if c.protocol == "tcp" and not replied(c):
                syns = forward_journeys(c, "syn")
                icmp = related_icmp(f, c)
                why = f"answered only by ICMP {icmp[0].name}" if icmp else "never answered"
                errors.append(f"#{c.index}: {c.client}: SYN sent {count(len(syns), 'time')}, {why}")
            path = f.paths.get(c.index)
            if path is not None and path.latency.server_ns is not None:
                server.append(path.latency.server_ns)
        ip = key.rsplit(":", 1)[0]
        who = f"{key} (pod {pods[ip]})" if ip in pods else key
        redirects = [local_redirect(c) for c in conns]
        if all(r is not None for r in redirects):
            asked = ", ".join(dict.fromkeys(str(r.before.dst) for r in redirects if r))
            who += f" (the client's sidecar; the app asked for {asked})"
        elif all(backend_of(c) is None for c in conns):
            who += " (not translated)"
        # Percentiles of one sample would repeat the same number three times.
        if len(server) == 1:
            lat = f"; server time {_ms(server[0])}"
        elif server:
            lat = (
                f"; server time p50 {_ms(_percentile(server, 50))}, "
                f"p90 {_ms(_percentile(server, 90))}, p99 {_ms(_percentile(server, 99))} "
                f"over {count(len(server), 'connection')}"
            )
        else:
            lat = ""
        title = (
            f"Backend {who}: {count(len(conns), 'connection')}, {count(requests, 'request')}, "
            f"{count(len(errors), 'error')}{lat}"
        )
        if errors:
            out.append(
                Finding(
                    "error",
                    2,
                    title,
                    tuple(errors[:10]),
                    "see the Service and path findings for where these fail"
                    + (f"; kubectl logs for the pod at {ip}" if ip in pods else ""),
                    SYMPTOM,
                )
            )
        else:
            out.append(Finding("info", 2, title, ()))
    return out


# --- step 3: DNS -----------------------------------------------------------------------------------


def _ms3(ns: int) -> str:
    # DNS times as `pathtrace analyze` prints them, so both commands show the same number.
    return f"{ns / MS:.3f} ms"


def _query_line(q: DnsQuery) -> str:
    """`client frame 1: A web.default.svc.cluster.local -> NOERROR 10.96.0.100 (client frame
    3, 0.972 ms)`: one question, its answer and how long it took at the asking point."""
    head = f"{frame_ref(q.point, q.frame)}: {q.qtype} {q.name}"
    sent = f", sent {q.sends} times" if q.sends > 1 else ""
    if q.rcode is None or q.latency_ns is None:
        return f"{head} -> no answer{sent}"
    got = ", ".join(q.answers[:3])
    if not got and q.rcode == "NOERROR":
        got = "(no records)"  # the name exists, just not with this type
    answer = f"{q.rcode} {got}".rstrip()
    return f"{head} -> {answer} ({frame_ref(q.point, q.answer_frame)}, {_ms3(q.latency_ns)}{sent})"


def step_dns(f: RunFacts) -> list[Finding]:
    wanted = _wanted_host(f.manifest)
    if not f.lookups:
        text = (
            f"the request named {wanted!r} but no lookup was captured (cached, /etc/hosts, or the "
            "DNS point missed it)"
            if wanted
            else "the client used an address"
        )
        return [Finding("info", 3, "No DNS lookup in the capture", (text,))]
    out: list[Finding] = []
    for lookup in f.lookups:
        out += _lookup_findings(lookup, wanted)
    return out


def _lookup_findings(lookup: DnsLookup, wanted: str | None) -> list[Finding]:
    name = lookup.name.rstrip(".")
    qs = lookup.queries
    lines = tuple(_query_line(q) for q in qs[:16])
    resolved = lookup.address is not None
    rcodes = {q.rcode for q in qs if q.rcode is not None}
    tried = list(dict.fromkeys(q.name for q in qs))
    expanded = list(dict.fromkeys(q.name for q in qs if q.expansion))
    unanswered = [q for q in qs if q.rcode is None]
    retried = [q for q in qs if q.sends > 1]
    out: list[Finding] = []
    if not resolved and rcodes and rcodes <= {"NXDOMAIN", "NOERROR"} and "NXDOMAIN" in rcodes:
        is_wanted = wanted is None or name.lower() == wanted.lower()
        out.append(
            Finding(
                "error" if is_wanted else "warning",
                3,
                f"DNS: {name!r} does not exist: NXDOMAIN for all {count(len(tried), 'name')} tried"
                + (f" ({len(expanded)} search-domain expansions, ndots:5)" if expanded else ""),
                lines,
                f"check the name: the Service is <name>.<namespace>.svc.cluster.local "
                f"(kubectl get svc -A | grep -i {name.split('.')[0]!s}); "
                "if it should exist, check CoreDNS's logs and the Service's namespace",
                ROOT,
            )
        )
    elif not resolved and rcodes - {"NXDOMAIN", "NOERROR"}:
        out.append(
            Finding(
                "error",
                3,
                f"DNS: the server failed to resolve {name!r} ({', '.join(sorted(rcodes))})",
                lines,
                "kubectl logs -n kube-system -l k8s-app=kube-dns; check CoreDNS's upstream "
                "(forward) servers",
                ROOT - 5,
            )
        )
    if unanswered:
        out.append(
            Finding(
                "warning" if resolved else "error",
                3,
                f"DNS: {count(len(unanswered), 'query', 'queries')} for {name!r} got no answer (timeout)",
                tuple(
                    f"{frame_ref(q.point, q.frame)}: {q.qtype} {q.name} "
                    f"({Tuple5(q.protocol, q.client, q.asked)})"
                    for q in unanswered[:10]
                ),
                "check the DNS pods (step 1) and that UDP 53 to the kube-dns ClusterIP is "
                "DNATed (conntrack -L -p udp --dport 53 on the client's node)",
                LOCATED if not resolved else SYMPTOM,
            )
        )
    if retried:
        out.append(
            Finding(
                "warning",
                3,
                f"DNS: retries for {name!r}: "
                + ", ".join(f"{q.name} {q.qtype} sent {q.sends} times" for q in retried),
                lines,
                "retries mean lost or slow answers: look at CoreDNS's load and at conntrack "
                "races on UDP (the 5 s resolver delay)",
                SYMPTOM,
            )
        )
    if resolved:
        elapsed = lookup.elapsed_ns or 0
        missed = [q for q in qs if q.rcode == "NXDOMAIN"]
        parts = [count(len(qs), "query", "queries")]
        if lookup.expansions:
            parts.append(f"{lookup.expansions} of them search-list expansions")
        if missed:
            parts.append(f"{count(len(missed), 'NXDOMAIN answer')} first (ndots:5)")
        title = f"DNS: {name} -> {lookup.address} in {_ms3(elapsed)} ({', '.join(parts)})"
        if elapsed >= SLOW_MS * MS:
            out.append(
                Finding(
                    "warning",
                    3,
                    f"DNS is slow: {title}",
                    lines,
                    "check CoreDNS's CPU and its upstreams; use the FQDN with a trailing dot "
                    "to skip the search list",
                    SLOW,
                )
            )
        else:
            out.append(Finding("info", 3, title, lines))
    return out


# --- step 4: the Service and kube-proxy ------------------------------------------------------------


def _first_node_sighting(f: RunFacts, c: Connection) -> Observation | None:
    for j in forward_journeys(c):
        for o in j.observations:
            if _role(f, o.point) == "node":
                return o
    return None


def _dnat_sighting(c: Connection, backend: Endpoint) -> Observation | None:
    for j in forward_journeys(c):
        for o in j.observations:
            if o.tuple5.dst == backend:
                return o
    return None


def step_service(f: RunFacts) -> list[Finding]:
    c = _main(f)
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
    name = _svc_name(found[0]) if found else str(asked)
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
    backend = backend_of(c)
    if found is None and f.before_wire is not None and f.before_wire.backend == c.client.dst:
        bw = f.before_wire
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
    if found is None:
        if backend is None:
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
    svc, port = found
    name = _svc_name(svc)
    icmp = related_icmp(f, c)
    rejects = [e for e in icmp if (e.icmp_type, e.code) in _PORT_UNREACH]
    unreach = [e for e in icmp if (e.icmp_type, e.code) in _HOST_UNREACH]
    syns = forward_journeys(c, "syn") or forward_journeys(c)
    answered = replied(c)
    first_node = _first_node_sighting(f, c)
    dnat_at = _dnat_sighting(c, backend) if backend is not None else None
    where = dnat_at or first_node
    node = _node_of(f, where.point) if where is not None else None
    info = f.nodes.get(node) if node else None
    result = walk_node(info, c.client)
    rule = stop_rule(result) if result is not None else None
    source = info.for_family(_family(c.client)).rules_source if info else None
    rule_line = f"{source}: {rule}" if source and rule else None
    ct = conntrack_for(info, c.client)
    ct_line = f"nodes/{node}/conntrack.txt: {ct.text.strip()}" if ct is not None else None
    syn_line = (
        f"{c.client} sent {count(len(syns), 'time')}"
        + (f" ({', '.join(_obs_ref(j.observations[0]) for j in syns[:4])})" if syns else "")
        + ("" if answered else ", never answered")
    )
    svc_line = _svc_text(svc, port)
    out: list[Finding] = []

    # REJECT: kube-proxy answers a SYN to a Service without endpoints with port unreachable.
    if not answered and (rejects or (result is not None and result.verdict == "REJECT")):
        evidence = [syn_line, *icmp_lines(rejects), svc_line]
        if rule_line:
            evidence.append(rule_line)
        title = (
            f"Service {name} has no endpoints: kube-proxy on {node or 'the node'} REJECTs "
            f'{c.client.dst} (ICMP port unreachable, "connection refused")'
            if not svc.endpoints
            else f"kube-proxy on {node or 'the node'} REJECTs {c.client.dst} of {name}"
        )
        out.append(
            Finding(
                "error",
                4,
                title,
                tuple(evidence),
                f"kubectl get endpointslices -n {svc.namespace} -l kubernetes.io/service-name="
                f"{svc.name}; compare the Service's selector with its pods' labels (kubectl get "
                f"pods -n {svc.namespace} --show-labels) and check that they are Ready",
                ROOT,
            )
        )
        return out

    # externalTrafficPolicy=Local on a node without a local endpoint: DROP, no conntrack entry.
    local_policy = svc.external_traffic_policy == "Local" and port.node_port == c.client.dst.port
    if local_policy and backend is None and not answered:
        local = [e for e in svc.endpoints if e.node == node]
        if not local:
            evidence = [
                syn_line
                + (f"; it reached {node} and nothing left {node} after it" if node else ""),
                svc_line,
            ]
            if info is not None and info.conntrack is not None and ct is None:
                evidence.append(
                    f"nodes/{node}/conntrack.txt: no entry for {c.client} (a packet dropped in "
                    "the filter table is never confirmed)"
                )
            if rule_line:
                evidence.append(rule_line)
            others = sorted({e.node for e in svc.endpoints if e.node})
            out.append(
                Finding(
                    "error",
                    4,
                    f"externalTrafficPolicy=Local: {node or 'the node'} has no local endpoint of "
                    f"{name}, so kube-proxy DROPs {c.client.dst}",
                    tuple(evidence),
                    (
                        f"send it to a node with an endpoint ({', '.join(others)}), "
                        if others
                        else ""
                    )
                    + "or set externalTrafficPolicy: Cluster (the server then sees the node's "
                    "address), or let the load balancer's health check (healthCheckNodePort) "
                    "keep traffic off nodes without endpoints",
                    ROOT,
                )
            )
            return out

    if backend is not None:
        pods = pod_addresses(f)
        ep_addrs = {e.address for e in svc.endpoints}
        health_ips = {p.ip for p in f.health.pods if p.ip} if f.health is not None else None
        no_pod = health_ips is not None and backend.ip not in health_ips
        stale = not answered and (bool(unreach) or no_pod or backend.ip not in ep_addrs)
        dnat_line = (
            f"{_obs_ref(dnat_at)}: DNAT {c.client.dst} -> {backend}"
            if dnat_at is not None
            else f"DNAT {c.client.dst} -> {backend}"
        )
        if stale:
            evidence = [dnat_line, syn_line, *icmp_lines(unreach)]
            if ct_line:
                evidence.append(ct_line)
            if no_pod:
                evidence.append(f"API: no pod in the cluster has the address {backend.ip}")
            elif backend.ip not in ep_addrs:
                evidence.append(f"{backend.ip} is not among the Service's endpoints")
            evidence.append(svc_line)
            if rule_line:
                evidence.append(rule_line)
            out.append(
                Finding(
                    "error",
                    4,
                    f"Stale endpoint: kube-proxy on {node or 'the node'} DNATs {name} to "
                    f"{backend}, and nothing answers at that address"
                    + (" (ICMP host unreachable)" if unreach else ""),
                    tuple(evidence),
                    f"kubectl get pods -A -o wide | grep -w {backend.ip}: when no pod has it, the "
                    "EndpointSlice or kube-proxy's rules are stale: check kube-controller-manager "
                    f"(endpointslice controller) and kube-proxy's logs on {node or 'the node'}; "
                    f"`conntrack -D -d {backend.ip}` clears entries already made",
                    ROOT,
                )
            )
            return out
        who = f" (pod {pods[backend.ip]})" if backend.ip in pods else ""
        evidence = [dnat_line]
        if ct_line:
            evidence.append(ct_line)
        out.append(
            Finding(
                "info",
                4,
                f"DNAT of {name} at {node or '?'}: {c.client.dst} -> {backend}{who}",
                tuple(evidence),
            )
        )
        if result is not None and result.verdict == "DNAT":
            allowed = {e.address for e in result.endpoints}
            if str(backend) in allowed:
                out.append(
                    Finding(
                        "info",
                        4,
                        f"{node}'s saved rules agree: {c.client.dst} is DNATed to one of "
                        f"{', '.join(sorted(allowed))}",
                        tuple(x for x in (rule_line,) if x),
                    )
                )
            else:
                out.append(
                    Finding(
                        "warning",
                        4,
                        f"{node}'s saved rules DNAT {c.client.dst} to {', '.join(sorted(allowed))}, "
                        f"but the packet went to {backend}",
                        tuple(x for x in (dnat_line, rule_line, ct_line) if x),
                        "the rules changed during the capture (a kube-proxy sync) or conntrack "
                        "kept an older choice: conntrack -L -d " + c.client.dst.ip,
                        SYMPTOM + 10,
                    )
                )
        return out

    if not svc.endpoints:
        out.append(
            Finding(
                "error",
                4,
                f"Service {name} has no endpoints",
                tuple(x for x in (syn_line, svc_line, rule_line) if x),
                f"kubectl get endpointslices -n {svc.namespace} -l kubernetes.io/service-name="
                f"{svc.name}",
                LOCATED,
            )
        )
    elif not answered and first_node is not None:
        evidence = [syn_line, svc_line]
        if result is not None:
            evidence.append(
                f"{node}'s saved rules: verdict {result.verdict}"
                + (f" ({rule_line})" if rule_line else "")
            )
        out.append(
            Finding(
                "warning",
                4,
                f"No DNAT seen for {name}: {c.client.dst} reached {node} untranslated",
                tuple(evidence),
                f"check kube-proxy on {node} (its logs, `iptables-save | grep {svc.name}`)",
                SYMPTOM + 20,
            )
        )
    return out


# --- step 5: Ingress --------------------------------------------------------------------------------


def step_ingress(f: RunFacts) -> list[Finding]:
    points = [p.name for p in f.manifest.points if p.role == "ingress"]
    if not points:
        return []
    out: list[Finding] = []
    http = _http_by_connection(f)
    for ing in points:
        upstream = [
            c for c in f.connections if c.points and c.points[0] == ing and not _is_dns_conn(c)
        ]
        up_index = {c.index for c in upstream}
        legs = [
            c
            for c in app_connections(f)
            if ing in c.points and c.points[0] != ing and c.index not in up_index
        ]
        for leg in legs:
            resp = http.get((leg.index, "reverse"), [])
            req = http.get((leg.index, "forward"), [])
            ups = [
                u
                for u in upstream
                if not req
                or (
                    u.start_ns >= leg.start_ns
                    and u.start_ns <= max(e.t_ns for e in req) + 60 * 10**9
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
            status = resp[0].status if resp else None
            own = resp[0].t_ns - req[0].t_ns - up_time if resp and req and ups else None
            if own is not None:
                evidence.append(
                    f"controller's own time ≈ {_ms(own)} (client-leg time minus upstream)"
                )
            if status is None:
                out.append(
                    Finding(
                        "error",
                        5,
                        f"The Ingress controller ({ing}) did not answer the request",
                        tuple(evidence),
                        "kubectl logs on the controller pod; check its Service/NodePort and that "
                        "it is Ready",
                        LOCATED,
                    )
                )
            elif status >= 500:
                out.append(
                    Finding(
                        "error",
                        5,
                        f"The Ingress controller ({ing}) answered HTTP {status}"
                        + (
                            f" after trying {', '.join(chosen)}"
                            if chosen
                            else " without reaching a backend"
                        ),
                        tuple(evidence),
                        "502/503/504 from the controller mean its upstream failed: check the "
                        "backend Service's endpoints (step 4) and the controller's error log",
                        ROOT - 10,
                    )
                )
            else:
                out.append(
                    Finding(
                        "info",
                        5,
                        f"The Ingress controller ({ing}) answered HTTP {status}"
                        + (f" via upstream {', '.join(chosen)}" if chosen else ""),
                        tuple(evidence),
                    )
                )
    return out


# --- step 6: the path ------------------------------------------------------------------------------


def expected_points(f: RunFacts, c: Connection, backend: Endpoint | None) -> list[str]:
    """The manifest's capture points the request should cross, in path order."""
    pods = pod_addresses(f)
    target_pod = pods.get(backend.ip) if backend is not None else None
    target_node = None
    if backend is not None:
        for s in f.manifest.services:
            for e in s.endpoints:
                if e.address == backend.ip and e.node:
                    target_node = e.node
        for info in f.nodes.values():
            if any(in_network(backend.ip, cidr) and name != "eth0" for name, cidr in info.subnets):
                target_node = target_node or info.node
    first = c.points[0] if c.points else None
    nodes: list[str] = []
    start_node = _node_of(f, first) if first else None
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


def step_path(f: RunFacts, slow_ms: float = SLOW_MS) -> list[Finding]:
    c = _main(f)
    if c is None:
        return []
    backend = backend_of(c)
    out: list[Finding] = []
    rtx = [j for j in c.journeys if j.retransmission > 0]
    if replied(c) or c.protocol not in ("tcp", "udp", "sctp"):
        path = f.paths.get(c.index)
        if path is None:
            return out
        lat = path.latency
        seq = " -> ".join(dict.fromkeys(h.point for h in path.forward))
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
        evidence = [f"path: {seq}"]
        if lat.total_ns is not None:
            evidence.append(
                f"total {_ms(lat.total_ns)} (first request packet to last reply packet at the client)"
            )
        if lat.connect_ns is not None:
            evidence.append(f"connect {_ms(lat.connect_ns)} (SYN to SYN-ACK at the client)")
        evidence += [f"{what}: {_ms(ns)}" for what, ns in parts]
        top = max(parts, key=lambda x: x[1]) if parts else None
        if top is not None and top[1] >= slow_ms * MS:
            share = f" of {_ms(lat.total_ns)} total" if lat.total_ns else ""
            srv = top[0].startswith("server")
            req = [e for e in f.http if e.connection == c.index]
            evidence += [
                f"{frame_ref(e.point, e.frame)}: "
                + (f"{e.method} {e.target}" if e.direction == "forward" else f"HTTP {e.status}")
                for e in req[:4]
            ]
            out.append(
                Finding(
                    "warning",
                    6,
                    f"Slow: the {top[0]} holds {_ms(top[1])}{share}"
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
            )
        else:
            total = f"{_ms(lat.total_ns)} total" if lat.total_ns is not None else "answered"
            largest = f"; largest share: {top[0]} {_ms(top[1])}" if top else ""
            out.append(
                Finding("info", 6, f"Path complete: {seq}; {total}{largest}", tuple(evidence))
            )
        if rtx:
            first = rtx[0].observations[0]
            out.append(
                Finding(
                    "warning",
                    6,
                    f"{count(len(rtx), 'retransmission')} on the way, the first at {first.point}",
                    tuple(
                        f"{_obs_ref(j.observations[0])}: {j.kind} retransmission {j.retransmission}, "
                        f"seen at {', '.join(dict.fromkeys(o.point for o in j.observations))}"
                        for j in rtx[:6]
                    ),
                    "retransmissions that reach the server mean lost replies; ones that do not "
                    "mean loss on the way: compare where each copy was last seen",
                    SYMPTOM - 10,
                )
            )
        return out

    # No answer: where was the request last seen, and where should it have appeared next?
    journeys = forward_journeys(c)
    if not journeys:
        return out
    longest = max(journeys, key=lambda j: (len(j.observations), j.retransmission))
    last = longest.observations[-1]
    seen = {o.point for j in journeys for o in j.observations}
    expected = expected_points(f, c, backend)
    pending = [p for p in expected if p not in seen]
    node = _node_of(f, last.point)
    info = f.nodes.get(node) if node and _role(f, last.point) == "node" else None
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
    target = pending[0] if pending else next_iface or "the server"
    where = ", ".join(x for x in (last.interface, last.direction) if x)
    title = f"The request was last seen at {last.point}" + (f" ({where})" if where else "")
    if pending:
        title += f"; it never reached {pending[0]}"
        if next_iface and not any(
            _role(f, p) == "node" and _node_of(f, p) == node for p in pending
        ):
            title += f" (next on {node}: {next_iface.split()[0]})"
    elif next_iface:
        title += f"; it never left {node} on {next_iface.split()[0]} toward {backend}"
    verdict = result.verdict if result is not None else ""
    kube = bool(drop_rule and "KUBE-" in drop_rule)
    if drop_rule:
        how = "kube-proxy's rules" if kube else "a filter rule"
        done = {"DROP": "Dropped", "REJECT": "Rejected"}.get(verdict, verdict)
        title = f"{done} on {node} by {how}: " + title[0].lower() + title[1:]
    elif node and not pending:
        title += f": dropped on {node}"
    # "#N" is a connection's number everywhere; a send is named as the merged pcapng names it.
    evidence = [
        f"{j.kind}, {f'retransmission {j.retransmission}' if j.retransmission else 'first send'}: "
        f"last seen {_obs_ref(j.observations[-1])} {j.observations[-1].tuple5}"
        for j in journeys[:6]
    ]
    evidence.append(
        f"{count(len(journeys), 'send')}, {count(len(rtx), 'retransmission')}, no reply captured at any point"
    )
    evidence.append(
        "expected path: " + " -> ".join(expected) if expected else "expected path unknown"
    )
    evidence += icmp_lines(related_icmp(f, c), 3)
    if drop_rule and info is not None:
        evidence.append(f"{info.for_family(_family(c.client)).rules_source}: {drop_rule}")
    ct = conntrack_for(f.nodes.get(_node_of(f, c.points[0]) or "") if c.points else None, c.client)
    if ct is not None:
        evidence.append(f"conntrack on {_node_of(f, c.points[0])}: {ct.text.strip()}")
    out.append(
        Finding(
            "error",
            6,
            title,
            tuple(evidence),
            (
                "see the Service finding (step 4): the rule is kube-proxy's"
                if kube
                else f"remove or fix that rule on {node} (iptables -S FORWARD; a NetworkPolicy "
                "may have installed it)"
                if drop_rule
                else f"capture at {target} and check {node or 'the node'}'s filter rules "
                "(iptables-save), NetworkPolicies and routes toward "
                f"{backend or c.client.dst}"
            ),
            LOCATED,
        )
    )
    return out


# --- all together -----------------------------------------------------------------------------------


def request_info(f: RunFacts) -> dict[str, object]:
    c = _main(f)
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
        "service": _svc_name(found[0]) if found else None,
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

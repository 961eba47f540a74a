"""What the troubleshooting steps share: finding weights, evidence wording, and the questions
more than one step asks of a run's facts (the main connection, its backend, the ICMP errors
about it, the Service it was sent to, the capture points, a walk through a node's saved rules).

Pure, like every step: facts in, values out.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from tracer.diagnose.model import HttpEvent, IcmpError, NodeInfo, RunFacts
from tracer.errors import PathtraceError
from tracer.model import CapturePoint, Connection, Endpoint, Journey, Observation, Tuple5
from tracer.protocols.dns import DNS_PORTS
from tracer.rules import Node, Packet, WalkResult, walk
from tracer.rules.conntrack import ConntrackEntry
from tracer.rules.explain_text import local_traffic_cidr
from tracer.rules.model import Entry, in_network
from tracer.rundir import Manifest, Service, ServicePort

SLOW_MS = 100.0  # a server time or segment above this is worth a warning
MS = 1_000_000

# Weights: a root cause outranks the symptoms it causes in other steps.
ROOT = 100
LOCATED = 90
SLOW = 80
SYMPTOM = 50
NOTE = 0


# --- evidence wording ----------------------------------------------------------------------------


def frame_ref(point: str, frame: int) -> str:
    """`client frame 6`: the frame number as Wireshark shows it (1-based)."""
    return f"{point} frame {frame + 1}"


def obs_ref(o: Observation) -> str:
    where = ", ".join(x for x in (o.interface, o.direction) if x)
    return f"{frame_ref(o.point, o.frame)}" + (f" ({where})" if where else "")


def ms(ns: int | float) -> str:
    return f"{ns / MS:.1f} ms" if abs(ns) >= MS / 10 else f"{ns / MS:.3f} ms"


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


# --- connections ----------------------------------------------------------------------------------


def main_connection(f: RunFacts) -> Connection | None:
    """The connection the user asked about (or the one chosen), None when there is none."""
    if f.main is None:
        return None
    for c in f.connections:
        if c.index == f.main:
            return c
    return None


def is_dns_conn(c: Connection) -> bool:
    ports = {t.dst.port for _, t in c.tuples} | {c.client.dst.port}
    return bool(DNS_PORTS.intersection(p for p in ports if p is not None))


def app_connections(f: RunFacts) -> list[Connection]:
    return [c for c in f.connections if c.protocol in ("tcp", "udp", "sctp") and not is_dns_conn(c)]


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


HttpIndex = Mapping[tuple[int, str], list[HttpEvent]]


def http_by_connection(f: RunFacts) -> dict[tuple[int, str], list[HttpEvent]]:
    """The HTTP events by (connection, direction): looked up per connection, not scanned."""
    out: dict[tuple[int, str], list[HttpEvent]] = {}
    for e in f.http:
        out.setdefault((e.connection, e.direction), []).append(e)
    return out


# --- the manifest: Services, pods and capture points ------------------------------------------------


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


def svc_name(s: Service) -> str:
    return f"{s.namespace}/{s.name}"


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


def role(f: RunFacts, name: str) -> str:
    p = _point(f, name)
    return p.role if p is not None else ""


def node_of(f: RunFacts, point: str) -> str | None:
    p = _point(f, point)
    return p.node if p is not None else None


# --- a node's saved rules and conntrack --------------------------------------------------------------


def _pod_cidr(info: NodeInfo | None) -> str | None:
    return local_traffic_cidr(info.rules) if info is not None and info.rules is not None else None


def _entry(src_ip: str, info: NodeInfo) -> Entry:
    if src_ip in info.addresses:
        return "local"
    cidr = _pod_cidr(info)
    if cidr is not None and in_network(src_ip, cidr):
        return "from_pod"
    return "external" if cidr is not None else "from_pod"


def family(t: Tuple5) -> int:
    return 6 if ":" in t.dst.ip else 4


def walk_node(info: NodeInfo | None, t: Tuple5) -> WalkResult | None:
    """Walk one packet through a node's saved rules of its family; None without rules or for a
    bad tuple."""
    if info is not None:
        info = info.for_family(family(t))
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

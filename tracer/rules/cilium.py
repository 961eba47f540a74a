"""Parse Cilium's load-balancer and conntrack dumps and walk a packet through its Services.

`cilium-dbg service list` (the agent's view), `cilium-dbg bpf lb list` (the BPF maps the
datapath reads) and `cilium-dbg bpf ct list global` (Cilium's own conntrack, outside netfilter)
as an agent writes them, in both the older and the newer layouts: frontends with or without
`/TCP`, `bpf lb list` with the slot after the service address or grouped under it. Cilium picks
among a Service's active backends (randomly, or by Maglev hash): each gets the same chance here.
With socket load-balancing the client's connect() is translated, so a conntrack entry marked
`service` or with a RevNAT id shows where the translation happened. Pure: text in, data out.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from tracer.errors import InputError
from tracer.model import Endpoint
from tracer.rules.model import Branch, Packet, RuleHit, WalkResult
from tracer.rules.result import assemble

_ADDR = r"(?:\[[0-9a-fA-F:.]+\]|[0-9.]+):\d+"
_SVC_ROW = re.compile(
    rf"^\s*(?P<id>\d+)\s+(?P<fe>{_ADDR})(?:/(?P<proto>[A-Z]+))?\s+(?P<type>[A-Za-z]+)\s*(?P<rest>.*)$"
)
_SVC_BACKEND = re.compile(
    rf"(?P<n>\d+)\s*=>\s*(?P<be>{_ADDR})(?:/(?P<proto>[A-Z]+))?(?:\s*\((?P<state>[a-z-]+)\))?"
)
_LB_ROW = re.compile(
    rf"^(?P<svc>{_ADDR})(?:/(?P<proto>[A-Z]+))?(?:\s+\((?P<svcslot>\d+)\))?\s+(?P<rest>.*)$"
)
_LB_BACKEND = re.compile(
    rf"^(?P<be>{_ADDR})(?:/(?P<proto>[A-Z]+))?\s+\((?P<revnat>\d+)\)\s+\((?P<slot>\d+)\)"
    r"(?:\s+\[(?P<flags>[^\]]*)\])?"
)
_CT_NEW = re.compile(
    rf"^(?P<proto>TCP|UDP|ICMP|ICMPv6|SCTP|ANY)\s+(?P<dir>IN|OUT|SVC)\s+(?P<src>{_ADDR})\s*->\s*"
    rf"(?P<dst>{_ADDR})(?P<rest>.*)$"
)
# Older agents print the addresses and then "sport:dport".
_CT_OLD = re.compile(
    r"^(?P<proto>TCP|UDP|ICMP|ICMPv6|SCTP|ANY)\s+(?P<dir>IN|OUT|SVC)\s+(?P<src>[0-9a-fA-F:.]+)\s+"
    r"(?P<sport>\d+):(?P<dport>\d+)(?P<rest>.*)$"
)
_REVNAT = re.compile(r"RevNAT=(\d+)")
_UNSPECIFIED = ("0.0.0.0", "::")


def _endpoint(text: str) -> Endpoint:
    host, _, port = text.rpartition(":")
    return Endpoint(host.strip("[]"), int(port))


@dataclass(frozen=True)
class CiliumBackend:
    address: Endpoint
    state: str | None = None  # active, terminating, quarantined, maintenance (service list)
    slot: int | None = None
    text: str = ""


@dataclass(frozen=True)
class CiliumService:
    frontend: Endpoint
    proto: str  # "tcp", "udp", "sctp", or "" when the dump does not say
    kind: str  # ClusterIP, NodePort, LoadBalancer, HostPort, ExternalIPs, LocalRedirect, ...
    backends: tuple[CiliumBackend, ...]
    id: int | None = None
    revnat: int | None = None
    text: str = ""

    def usable(self) -> tuple[CiliumBackend, ...]:
        """The backends Cilium picks among for a new connection."""
        return tuple(b for b in self.backends if b.state in (None, "active"))


@dataclass(frozen=True)
class CiliumLB:
    """One node's Services as a Cilium agent listed them."""

    services: tuple[CiliumService, ...]
    source: str = "<cilium>"
    warnings: tuple[str, ...] = ()

    def find(self, dst: Endpoint, proto: str) -> CiliumService | None:
        for s in self.services:
            if s.frontend == dst and s.proto in (proto, ""):
                return s
        return None


@dataclass
class _Row:
    """A Service while its lines are read."""

    frontend: Endpoint
    proto: str
    kind: str = ""
    id: int | None = None
    revnat: int | None = None
    text: str = ""
    backends: list[CiliumBackend] = field(default_factory=list)

    def done(self) -> CiliumService:
        backends = tuple(sorted(self.backends, key=lambda b: b.slot or 0))
        return CiliumService(
            self.frontend, self.proto, self.kind, backends, self.id, self.revnat, self.text
        )


def parse_service_list(text: str, *, source: str = "<cilium service list>") -> CiliumLB:
    """`cilium-dbg service list`: ID, Frontend, Service Type, then `N => backend (state)` lines."""
    lines = text.splitlines()
    if not any(line.split()[:2] == ["ID", "Frontend"] for line in lines if line.strip()):
        raise InputError(f"{source}: not `cilium-dbg service list` output (no ID/Frontend header)")
    rows: list[_Row] = []
    warnings: list[str] = []
    for n, line in enumerate(lines, 1):
        if not line.strip() or line.split()[:2] == ["ID", "Frontend"]:
            continue
        m = _SVC_ROW.match(line)
        if m:
            rows.append(
                _Row(
                    _endpoint(m["fe"]),
                    (m["proto"] or "").lower(),
                    m["type"],
                    int(m["id"]),
                    text=line.rstrip(),
                )
            )
            rest = m["rest"]
        elif rows:
            rest = line
        else:
            warnings.append(f"{source}:{n}: not understood: {line.strip()}")
            continue
        b = _SVC_BACKEND.search(rest)
        if b:
            rows[-1].backends.append(
                CiliumBackend(_endpoint(b["be"]), b["state"], int(b["n"]), line.strip())
            )
    return CiliumLB(tuple(r.done() for r in rows), source, tuple(warnings))


def parse_bpf_lb_list(text: str, *, source: str = "<cilium bpf lb list>") -> CiliumLB:
    """`cilium-dbg bpf lb list`: a service address and its backends by slot; slot 0 is the
    frontend itself (`0.0.0.0:0 ... [ClusterIP, non-routable]`)."""
    lines = text.splitlines()
    if not any(line.startswith("SERVICE ADDRESS") for line in lines):
        raise InputError(f"{source}: not `cilium-dbg bpf lb list` output (no SERVICE ADDRESS)")
    rows: dict[tuple[Endpoint, str], _Row] = {}
    warnings: list[str] = []
    current: _Row | None = None
    for n, line in enumerate(lines, 1):
        if not line.strip() or line.startswith("SERVICE ADDRESS"):
            continue
        if line[:1].isspace():
            rest = line.strip()
        else:
            m = _LB_ROW.match(line.strip())
            if not m:
                warnings.append(f"{source}:{n}: not understood: {line.strip()}")
                continue
            key = (_endpoint(m["svc"]), (m["proto"] or "").lower())
            current = rows.setdefault(key, _Row(key[0], key[1], text=line.rstrip()))
            rest = m["rest"]
        if current is None:
            continue
        b = _LB_BACKEND.match(rest)
        if not b:
            warnings.append(f"{source}:{n}: not understood: {line.strip()}")
            continue
        current.revnat = int(b["revnat"])
        if int(b["slot"]) == 0:
            current.kind = (b["flags"] or "").split(",")[0].strip()
            continue
        be = _endpoint(b["be"])
        if be.ip not in _UNSPECIFIED:
            current.backends.append(CiliumBackend(be, None, int(b["slot"]), line.strip()))
    return CiliumLB(tuple(r.done() for r in rows.values()), source, tuple(warnings))


@dataclass(frozen=True)
class CiliumCtEntry:
    """One entry of Cilium's own conntrack (not netfilter's)."""

    proto: str
    direction: str  # IN, OUT (SVC on some versions)
    src: Endpoint
    dst: Endpoint
    service: bool  # a Service entry: the frontend side of a load-balanced connection
    revnat: int | None
    text: str


def parse_bpf_ct_list(
    text: str, *, source: str = "<cilium bpf ct list>"
) -> tuple[CiliumCtEntry, ...]:
    """`cilium-dbg bpf ct list global`, one entry per line; other lines are skipped."""
    out: list[CiliumCtEntry] = []
    for line in text.splitlines():
        s = line.strip()
        m = _CT_NEW.match(s)
        if m:
            src, dst, rest = _endpoint(m["src"]), _endpoint(m["dst"]), m["rest"]
        else:
            m = _CT_OLD.match(s)
            if not m:
                continue
            # Old layout: the address printed is the remote one; the ports are source:destination.
            src = Endpoint(m["src"], int(m["sport"]))
            dst = Endpoint("", int(m["dport"]))
            rest = m["rest"]
        rev = _REVNAT.search(rest)
        revnat = int(rev.group(1)) if rev else None
        out.append(
            CiliumCtEntry(
                proto=m["proto"].lower(),
                direction=m["dir"],
                src=src,
                dst=dst,
                service=" service " in f" {rest} " or m["dir"] == "SVC",
                revnat=revnat if revnat else None,
                text=s,
            )
        )
    return tuple(out)


def walk_cilium(lb: CiliumLB, packet: Packet) -> WalkResult:
    """Where Cilium's load-balancer sends `packet`: each usable backend with an equal chance.

    No match means Cilium serves no Service at that address (NO-MATCH)."""
    warnings = list(lb.warnings)
    svc = lb.find(packet.dst, packet.proto)
    if svc is None:
        return assemble(
            "cilium", packet, [], [*warnings, "no Cilium Service has this frontend"], []
        )
    hit = RuleHit("cilium", f"{svc.kind or 'Service'} {svc.frontend}", svc.text, None)
    usable = svc.usable()
    if not usable:
        warnings.append(f"Cilium's Service {svc.frontend} has no usable backend: connections fail")
        return assemble(
            "cilium", packet, [Branch(1.0, "REJECT", None, False, (hit,))], warnings, []
        )
    p = 1.0 / len(usable)
    branches = [
        Branch(p, "DNAT", b.address, False, (hit, RuleHit("cilium", hit.chain, b.text, None)))
        for b in usable
    ]
    notes = [
        "Cilium picks a backend per connection (random or Maglev): each shown as equally likely"
    ]
    return assemble("cilium", packet, branches, warnings, notes)

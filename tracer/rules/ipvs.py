"""Parse `ipvsadm -Ln` and walk a packet through IPVS virtual services (kube-proxy's IPVS mode).

A virtual service maps to its real servers; the scheduler decides the choice: `rr` (and the other
unweighted schedulers) gives each real server with a non-zero weight the same chance, `wrr` and
the weighted ones give weight/sum. `persistent N` is ClientIP affinity and is noted. The
masquerade decision is not IPVS's: it comes from kube-proxy's KUBE-* iptables rules when they are
given. Pure: text in, data out.
"""

from __future__ import annotations

from dataclasses import dataclass

from tracer.errors import InputError
from tracer.model import Endpoint
from tracer.rules.iptables import IptablesRuleset
from tracer.rules.iptables_walk import parse_to_destination, walk_iptables
from tracer.rules.model import Branch, Node, Packet, RuleHit, WalkResult
from tracer.rules.result import assemble

_WEIGHTED = frozenset({"wrr", "wlc", "lblc", "lblcr", "sed", "nq", "mh"})
_FORWARD = {"Masq": "masq", "Route": "route", "Tunnel": "tunnel", "Local": "local"}


@dataclass(frozen=True)
class RealServer:
    address: Endpoint
    forward: str
    weight: int
    active: int = 0
    inactive: int = 0
    text: str = ""


@dataclass(frozen=True)
class VirtualService:
    proto: str  # "tcp", "udp", "sctp", or "fwm" (firewall mark)
    address: Endpoint | None  # None for FWM services
    fwmark: int | None
    scheduler: str
    persistent: int | None
    real_servers: tuple[RealServer, ...]
    text: str = ""
    line: int = 0


@dataclass(frozen=True)
class IpvsTable:
    services: tuple[VirtualService, ...]
    warnings: tuple[str, ...] = ()


def _endpoint(text: str) -> Endpoint | None:
    ep = parse_to_destination(text)
    return ep if ep is not None and ep.port is not None else None


def parse_ipvsadm(text: str, *, source: str = "<rules>") -> IpvsTable:
    services: list[VirtualService] = []
    warnings: list[str] = []
    current: dict[str, object] | None = None
    reals: list[RealServer] = []

    def flush() -> None:
        nonlocal current, reals
        if current is not None:
            services.append(VirtualService(real_servers=tuple(reals), **current))  # type: ignore[arg-type]
        current, reals = None, []

    for lineno, raw in enumerate(text.splitlines(), start=1):
        s = raw.strip()
        if not s:
            continue
        if s.startswith(("IP Virtual Server", "Prot LocalAddress", "-> RemoteAddress")):
            continue
        words = s.split()
        if words[0] == "->":
            if current is None or len(words) < 3:
                warnings.append(f"{source}:{lineno}: real server line outside a service: {s[:120]}")
                continue
            ep = _endpoint(words[1])
            try:
                weight = int(words[3]) if len(words) > 3 else 1
                active = int(words[4]) if len(words) > 4 else 0
                inactive = int(words[5]) if len(words) > 5 else 0
            except ValueError:
                ep = None
            if ep is None:
                warnings.append(f"{source}:{lineno}: real server line not understood: {s[:120]}")
                continue
            reals.append(
                RealServer(
                    ep, _FORWARD.get(words[2], words[2].lower()), weight, active, inactive, s
                )
            )
            continue
        if words[0] in ("TCP", "UDP", "SCTP", "FWM") and len(words) >= 3:
            flush()
            proto = words[0].lower()
            addr: Endpoint | None = None
            fwmark: int | None = None
            if proto == "fwm":
                try:
                    fwmark = int(words[1], 0)
                except ValueError:
                    warnings.append(f"{source}:{lineno}: firewall mark not understood: {s[:120]}")
                    continue
            else:
                addr = _endpoint(words[1])
                if addr is None:
                    warnings.append(f"{source}:{lineno}: virtual service not understood: {s[:120]}")
                    continue
            persistent: int | None = None
            if "persistent" in words:
                i = words.index("persistent")
                try:
                    persistent = int(words[i + 1]) if i + 1 < len(words) else 300
                except ValueError:
                    persistent = 300
            current = {
                "proto": proto,
                "address": addr,
                "fwmark": fwmark,
                "scheduler": words[2],
                "persistent": persistent,
                "text": s,
                "line": lineno,
            }
            continue
        warnings.append(f"{source}:{lineno}: ignored (not an ipvsadm -Ln line): {s[:120]}")
    flush()
    if not services and warnings:
        raise InputError(f"{source}: no IPVS virtual service could be read")
    return IpvsTable(tuple(services), tuple(warnings))


def choices(vs: VirtualService) -> list[tuple[RealServer, float]]:
    """Each usable real server with the probability the scheduler picks it for a new client."""
    usable = [r for r in vs.real_servers if r.weight > 0]
    if not usable:
        return []
    if vs.scheduler in _WEIGHTED:
        total = sum(r.weight for r in usable)
        return [(r, r.weight / total) for r in usable]
    return [(r, 1.0 / len(usable)) for r in usable]


def walk_ipvs(
    table: IpvsTable, packet: Packet, node: Node, iptables: IptablesRuleset | None = None
) -> WalkResult:
    warnings = list(table.warnings)
    notes: list[str] = []
    vs = next(
        (
            v
            for v in table.services
            if v.address is not None
            and v.proto == packet.proto
            and v.address.ip == packet.dst.ip
            and v.address.port == packet.dst.port
        ),
        None,
    )
    if vs is None:
        return assemble(
            "ipvs",
            packet,
            [],
            warnings + ["no IPVS virtual service matches the destination"],
            notes,
        )
    hit = RuleHit("ipvs", f"{vs.proto.upper()} {vs.address}", vs.text, None)
    picks = choices(vs)
    if vs.persistent:
        notes.append(
            f"persistent {vs.persistent}: ClientIP affinity; a client seen in the last "
            f"{vs.persistent} s goes back to the same real server"
        )
    if not picks:
        warnings.append(
            "the virtual service has no real server with a weight above 0: the node answers "
            "itself (kube-ipvs0 holds the address) and nothing listens there"
        )
        return assemble(
            "ipvs", packet, [Branch(1.0, "REJECT", None, False, (hit,))], warnings, notes
        )
    vips = tuple(v.address.ip for v in table.services if v.address is not None)
    if iptables is not None:
        post = tuple((r.address, p) for r, p in picks)
        res = walk_iptables(iptables, packet, node, mode="ipvs", extra_local=vips, post_dnat=post)
        branches = [
            Branch(b.probability, b.verdict, b.endpoint, b.masquerade, (hit, *b.rules), b.notes)
            for b in res.branches
        ]
        warnings.extend(res.warnings)
        notes.extend(res.notes)
    else:
        warnings.append(
            "no iptables rules given: whether IPVS traffic is masqueraded is decided by kube-proxy's "
            "KUBE-* iptables rules, so it is shown as not masqueraded"
        )
        branches = [
            Branch(p, "DNAT", r.address, False, (hit, RuleHit("ipvs", hit.chain, r.text, None)))
            for r, p in picks
        ]
    return assemble("ipvs", packet, branches, warnings, notes)

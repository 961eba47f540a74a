"""What a rule walk takes and returns: the packet, the node, the matched rules, the outcome.

Frozen dataclasses and small address helpers only; no parsing of dumps and no I/O here. The three
walkers (iptables, nftables, IPVS) all return a `WalkResult` built from `Branch`es: one branch per
way the kernel can go (one per endpoint a random match can pick), each with its probability.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Literal

from tracer.model import Endpoint

Entry = Literal["from_pod", "local", "external"]
Verdict = Literal["DNAT", "ACCEPT", "DROP", "REJECT", "NO-MATCH"]
VERDICTS: tuple[str, ...] = ("DNAT", "ACCEPT", "DROP", "REJECT", "NO-MATCH")

# kube-proxy's masquerade bit (1 << 14, --iptables-masquerade-bit default).
MASQ_MARK = 0x4000


@dataclass(frozen=True)
class Packet:
    """The first packet of a connection as it reaches the node's netfilter hooks.

    `entry` is where it comes from: a pod interface or an external interface (nat PREROUTING) or a
    process on the node itself (nat OUTPUT).
    """

    proto: str
    src: Endpoint
    dst: Endpoint
    entry: Entry = "from_pod"
    # Known only for a walk inside a pod (a sidecar's capture rules match on them): the
    # interface the route picked (`-o`), and the sending socket's owner (`-m owner`), where
    # OTHER_OWNER stands for a process that is none of the owners the rules name (the app).
    out_interface: str | None = None
    owner_uid: int | None = None
    owner_gid: int | None = None

    def __str__(self) -> str:
        return f"{self.proto} {self.src} > {self.dst}"


OTHER_OWNER = -1


@dataclass(frozen=True)
class Node:
    """What the walk needs to know about the node the rules belong to.

    `addresses` are its own addresses (`-m addrtype --src-type/--dst-type LOCAL`, `fib … type
    local`); 127.0.0.0/8 is always local. `pod_cidr` only improves the narrative.
    """

    addresses: tuple[str, ...] = ()
    pod_cidr: str | None = None

    def is_local(self, ip: str) -> bool:
        if ip in self.addresses:
            return True
        return in_network(ip, "127.0.0.0/8")


@dataclass(frozen=True)
class RuleHit:
    """One rule that matched, as it reads in the dump."""

    table: str
    chain: str
    rule: str
    comment: str | None = None
    # 0 before routing (nat pre-routing), 1 filter, 2 post-routing: orders the merged rule path.
    phase: int = field(default=0, compare=False)

    def to_json(self) -> dict[str, Any]:
        return {
            "table": self.table,
            "chain": self.chain,
            "rule": self.rule,
            "comment": self.comment,
        }


@dataclass(frozen=True)
class Branch:
    """One way through the rules, with the probability the kernel takes it."""

    probability: float
    verdict: str
    endpoint: Endpoint | None
    masquerade: bool
    rules: tuple[RuleHit, ...]
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class WalkState:
    """One way through the rules while it is walked: the packet as rewritten so far, its mark,
    conntrack state words (iptables spells them NEW/DNAT, nftables new/dnat) and the rules hit."""

    prob: float
    proto: str
    src: str
    sport: int | None
    dst: str
    dport: int | None
    ctstates: frozenset[str]
    mark: int = 0
    dnat: Endpoint | None = None
    masq: bool = False
    accepted: bool = False
    hits: tuple[RuleHit, ...] = ()

    @classmethod
    def first(cls, packet: Packet, ctstate: str) -> WalkState:
        """The packet before any hook: certain, unmarked, in conntrack state `ctstate`."""
        return cls(
            prob=1.0,
            proto=packet.proto,
            src=packet.src.ip,
            sport=packet.src.port,
            dst=packet.dst.ip,
            dport=packet.dst.port,
            ctstates=frozenset({ctstate}),
        )

    def branch(self, verdict: str) -> Branch:
        return Branch(self.prob, verdict, self.dnat, self.masq, self.hits)


@dataclass(frozen=True)
class EndpointChoice:
    """An endpoint the packet can be DNATed to, with its overall probability."""

    address: str
    probability: float
    masquerade: bool

    def to_json(self) -> dict[str, Any]:
        return {"address": self.address, "probability": round(self.probability, 3)}


@dataclass(frozen=True)
class WalkResult:
    """The outcome of walking one packet through one ruleset."""

    mode: str
    packet: Packet
    verdict: str
    endpoints: tuple[EndpointChoice, ...]
    masquerade: bool
    rules: tuple[RuleHit, ...]
    warnings: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    branches: tuple[Branch, ...] = field(default=(), compare=False)
    service: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The stable JSON shape of `pathtrace explain --format json`."""
        return {
            "verdict": self.verdict,
            "endpoints": [e.to_json() for e in self.endpoints],
            "masquerade": self.masquerade,
            "rules": [r.to_json() for r in self.rules],
            "warnings": list(self.warnings),
        }


@lru_cache(maxsize=4096)
def parse_network(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    """A CIDR or a bare address as a network; None when it is neither."""
    try:
        return ipaddress.ip_network(text.strip(), strict=False)
    except ValueError:
        return None


@lru_cache(maxsize=4096)
def parse_ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text.strip())
    except ValueError:
        return None


def in_network(ip: str, cidr: str) -> bool:
    """True when `ip` lies in `cidr` (a bare address is a /32); False for anything unparsable."""
    addr = parse_ip(ip)
    net = parse_network(cidr)
    if addr is None or net is None or addr.version != net.version:
        return False
    return addr in net


def service_from_chain(name: str) -> str | None:
    """`ns/name:port` from an nftables kube-proxy chain name (`service-HASH-ns/name/tcp/port`)."""
    for prefix in ("service-", "external-", "local-", "firewall-", "endpoint-"):
        if name.startswith(prefix):
            rest = name[len(prefix) :]
            _, _, spn = rest.partition("-")
            spn = spn.split("__", 1)[0]
            parts = spn.split("/")
            if len(parts) == 4:
                ns, svc, _proto, port = parts
                return f"{ns}/{svc}:{port}" if port else f"{ns}/{svc}"
    return None

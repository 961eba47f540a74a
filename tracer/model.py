"""The data model: frozen dataclasses shared by every layer.

Names follow the RFCs, the kernel and kube-proxy: a `Tuple5` is what conntrack calls a tuple, a
`Translation` is a DNAT/SNAT seen between two consecutive observations of one packet.
This module imports nothing that does I/O and holds no logic beyond small derived properties
and `translation_kind`, the one rule that names a rewrite, shared by every layer.
Fields may be added (with defaults, at the end); none may be renamed: JSON output depends on them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Role = Literal["client", "node", "server", "ingress", "dns", "external"]
ROLES: tuple[str, ...] = ("client", "node", "server", "ingress", "dns", "external")
Direction = Literal["in", "out"]
# REDIRECT: a DNAT to the host itself inside the capturing namespace (a sidecar's capture
# rules), seen as the request's tuple against its reply's at one point (see path.local_redirect).
TranslationKind = Literal[
    "DNAT", "SNAT", "DNAT+SNAT", "un-DNAT", "un-SNAT", "un-DNAT+un-SNAT", "REDIRECT"
]


@dataclass(frozen=True, order=True)
class Endpoint:
    """An address with an optional port (ICMP and non-IP have none)."""

    ip: str
    port: int | None = None

    def __str__(self) -> str:
        if self.port is None:
            return self.ip
        if ":" in self.ip:
            return f"[{self.ip}]:{self.port}"
        return f"{self.ip}:{self.port}"


@dataclass(frozen=True, order=True)
class Tuple5:
    """A conntrack-style tuple: protocol name ("tcp", "udp", "icmp", "icmpv6") and endpoints."""

    proto: str
    src: Endpoint
    dst: Endpoint

    def reversed(self) -> Tuple5:
        return Tuple5(self.proto, self.dst, self.src)

    def __str__(self) -> str:
        return f"{self.proto} {self.src} > {self.dst}"


@dataclass(frozen=True)
class CapturePoint:
    """One capture: where it was taken and which clock stamped it.

    `node` names the clock domain: points on the same node share one clock.
    """

    name: str
    role: str
    file: str
    node: str | None = None
    pod: str | None = None
    namespace: str | None = None
    container: str | None = None
    interface: str | None = None
    started_ns: int | None = None
    stopped_ns: int | None = None
    packets: int | None = None
    dropped: int | None = None


@dataclass(frozen=True)
class Observation:
    """One sighting of a packet at one point (and interface, and direction).

    `t_ns` is the point's own clock (epoch ns), before any clock correction.
    """

    point: str
    frame: int
    t_ns: int
    tuple5: Tuple5
    interface: str | None = None
    direction: Direction | None = None
    ttl: int | None = None
    ip_id: int | None = None
    encap: tuple[str, ...] = ()
    payload_len: int = 0
    # An offload super-segment (GSO/TSO/GRO) matched to wire segments by TCP sequence range:
    # "first byte" or "last byte", the byte whose time its timestamp is.
    offload: str | None = None


@dataclass(frozen=True)
class Translation:
    """A change of tuple between two consecutive observations of the same packet."""

    kind: TranslationKind
    before: Tuple5
    after: Tuple5


def translation_kind(before: Tuple5, after: Tuple5, reply: bool) -> TranslationKind | None:
    """DNAT/SNAT (or their undoing on a reply) between two tuples of one packet."""
    dst = before.dst != after.dst
    src = before.src != after.src
    if not (dst or src):
        return None
    if reply:
        # conntrack undoes the DNAT on the reply's source and the SNAT on its destination.
        if dst and src:
            return "un-DNAT+un-SNAT"
        return "un-DNAT" if src else "un-SNAT"
    if dst and src:
        return "DNAT+SNAT"
    return "DNAT" if dst else "SNAT"


@dataclass(frozen=True)
class Journey:
    """Every observation of one packet, in path order.

    `kind` says what the packet is in its connection ("syn", "syn-ack", "data", "ack", "fin",
    "rst", "udp", "icmp", ...); `direction` is "forward" (client to server) or "reverse".
    `retransmission` counts earlier sends of the same segment (0 for the original).
    """

    kind: str
    direction: Literal["forward", "reverse"]
    observations: tuple[Observation, ...]
    retransmission: int = 0


@dataclass(frozen=True)
class Hop:
    """One observation placed on the path, with a clock-corrected time and the rewrite before it.

    `t_ns` is relative to the first forward hop after clock correction; `translation` is the
    rewrite between the previous hop and this one (None where the tuple did not change).
    """

    point: str
    role: str
    node: str | None
    interface: str | None
    direction: Direction | None
    t_ns: int
    tuple5: Tuple5
    ttl: int | None = None
    translation: Translation | None = None
    frame: int | None = None
    kind: str = "packet"  # "packet", or "proxy": an L7 proxy's own time between two connections
    # What to know when reading this hop's time (e.g. an offload super-segment stands for one
    # byte of its range).
    note: str | None = None


@dataclass(frozen=True)
class ClockEstimate:
    """The offset of `node`'s clock against `reference`: reference time = node time - offset."""

    node: str
    reference: str
    offset_ns: int
    error_bound_ns: int
    samples: int
    drift_ppm: float | None = None


@dataclass(frozen=True)
class Segment:
    """The network time between two consecutive points of the path."""

    from_point: str
    to_point: str
    first_ns: int
    median_ns: int
    packets: int
    negative: bool = False
    # Set where the two points are on different clocks: how far the clock correction may be off
    # (the sum of both clocks' bounds against the reference); -1 where a clock is only bounded
    # one way (matched packets in one direction: the delay assumes the fastest took no time).
    error_bound_ns: int | None = None


@dataclass(frozen=True)
class Latency:
    """Where the request's time went."""

    total_ns: int | None
    connect_ns: int | None
    server_ns: int | None
    segments: tuple[Segment, ...] = ()
    proxy_ns: int | None = None  # time spent inside L7 proxies (see Path.stitches)


@dataclass(frozen=True)
class Connection:
    """A connection (TCP) or exchange (UDP, ICMP) followed across points.

    `client` is the tuple as the client sent it (at the earliest point), `tuples` the tuple of the
    forward direction at each point that saw it, `backend` the destination after the last DNAT.
    """

    index: int
    protocol: str
    client: Tuple5
    points: tuple[str, ...]
    tuples: tuple[tuple[str, Tuple5], ...]
    journeys: tuple[Journey, ...]
    start_ns: int
    backend: Endpoint | None = None
    summary: str = ""


@dataclass(frozen=True)
class Request:
    """The request the path describes."""

    index: int
    protocol: str
    client: str
    destination: str
    backend: str | None
    summary: str
    start_ns: int


@dataclass(frozen=True)
class Stitch:
    """Two connections joined by an L7 proxy: the request of `client_leg` goes on as `server_leg`.

    `confidence` is "high", "medium" or "low"; `reasons` says what agreed (the HTTP request,
    X-Request-ID, traceparent, time). `proxy_ns` is the proxy's own time: request in to request
    out plus response in to response out, at the proxy's point (None when a side is missing).
    """

    client_leg: int
    server_leg: int
    proxy: str
    confidence: str
    reasons: tuple[str, ...]
    proxy_ns: int | None = None


@dataclass(frozen=True)
class Path:
    """The answer: one request's path out and back, its latency, and how far to trust it."""

    request: Request
    forward: tuple[Hop, ...]
    reverse: tuple[Hop, ...]
    latency: Latency
    clocks: tuple[ClockEstimate, ...] = ()
    warnings: tuple[str, ...] = ()
    points: tuple[CapturePoint, ...] = field(default=())
    # Set when the request crossed an L7 proxy: then `forward`/`reverse` follow the request's
    # first data packet and its response through every leg, with a "proxy" hop between legs.
    stitches: tuple[Stitch, ...] = ()
    # Informational messages about the captures (frames that were not IP, a proxy stitch): what
    # a person need not act on, kept apart from `warnings`.
    notes: tuple[str, ...] = ()

"""The DNS lookup behind a request: which queries gave the client its destination address.

A pod that runs `curl http://web/` first asks kube-dns (a ClusterIP, DNATed to a DNS pod) for
`web` expanded with each search domain of its resolv.conf (`ndots:5`), A and AAAA each, until one
is answered; only then does it connect. This module finds that lookup among the connections the
correlator found: the DNS exchanges from the same client address, before the request, whose
answer holds the request's destination (or, when the request is itself a DNS query, the queries
around it), together with every other query for the same name.

`find_lookup` and `pair_queries` are pure (connections and decoded DNS packets in, data out);
`read_dns_packets` is the one edge: it reads the few payload bytes of each DNS packet through
`tracer.pcap.payload.PayloadReader`. Nothing here prints or decides what the request is.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from tracer.model import Connection, Endpoint
from tracer.pcap.columns import Frames
from tracer.pcap.payload import PayloadReader
from tracer.protocols.dns import DNS_PORTS, DnsMessage, dns_message
from tracer.rundir import Service

# A retry after the resolver's timeout (resolv.conf `timeout`, 5 s by default) still belongs to
# the same lookup; a gap longer than this starts another one.
MAX_GAP_NS = 6_000_000_000
# How far before the request a lookup is looked for at all.
LOOKBACK_NS = 30_000_000_000
# A pod's search list is "<ns>.svc.<domain> svc.<domain> <domain>"; a name in the first of those
# gives away the namespace and the cluster domain, hence the whole list.
_POD_SEARCH = re.compile(r"(?P<stem>.+?)\.(?P<ns>[^.]+)\.svc\.(?P<domain>.+)\Z")


@dataclass(frozen=True)
class DnsPacket:
    """One decoded DNS message of a connection, as its asking point (the first one) saw it."""

    connection: int
    point: str
    forward: bool  # True for a packet from the asker (a query), False for a reply
    t_ns: int  # that point's clock
    message: DnsMessage
    frame: int = -1  # 0-based index in that point's capture, -1 when unknown


@dataclass(frozen=True)
class DnsQuery:
    """One question and its answer, timed at the point that asked.

    `asked` is where the query was sent (the kube-dns ClusterIP), `server` who answered it after
    the DNAT (a DNS pod), `latency_ns` query out to answer in at the asking point; `rcode` and
    `latency_ns` are None when no answer was seen.
    """

    connection: int
    point: str
    protocol: str
    client: Endpoint
    asked: Endpoint
    server: Endpoint
    name: str
    qtype: str
    start_ns: int
    rcode: str | None = None
    answers: tuple[str, ...] = ()
    latency_ns: int | None = None
    server_name: str | None = None  # the pod behind `server`, when the run names it
    asked_name: str | None = None  # the Service behind `asked`, when the run names it
    expansion: bool = False  # the name is a search-list expansion of what was typed
    frame: int = -1  # the query's frame at `point` (0-based; its first send when retried)
    answer_frame: int = -1  # the answer's frame at `point`, -1 when no answer was seen
    sends: int = 1  # how many times the resolver sent this question (retries included)


@dataclass(frozen=True)
class DnsLookup:
    """The queries that resolved the request's destination, in time order.

    `name` is the name as the application gave it (before search expansion, as far as the
    queries show it); `answered_by` the query whose answer held `address`; `elapsed_ns` first
    query out to that answer in. For a request that is itself a DNS query, `address` and
    `answered_by` are None unless one of the queries was answered with an address.
    """

    name: str
    queries: tuple[DnsQuery, ...]
    address: str | None = None
    answered_by: DnsQuery | None = None
    elapsed_ns: int | None = None
    search: tuple[str, ...] = ()

    @property
    def expansions(self) -> int:
        """How many queries asked for a search-list expansion of the name."""
        return sum(1 for q in self.queries if q.expansion)


def is_dns(connection: Connection) -> bool:
    """A UDP or TCP connection to a DNS port (before or after the DNAT)."""
    if connection.protocol not in ("udp", "tcp"):
        return False
    ports = {connection.client.dst.port}
    if connection.backend is not None:
        ports.add(connection.backend.port)
    return bool(ports & DNS_PORTS)


def candidates(request: Connection, connections: Iterable[Connection]) -> list[Connection]:
    """The DNS connections that may hold the request's lookup: same client address, near it."""
    lo = request.start_ns - LOOKBACK_NS
    hi = request.start_ns + (LOOKBACK_NS if is_dns(request) else 0)
    return [
        c
        for c in connections
        if is_dns(c) and c.client.src.ip == request.client.src.ip and lo <= c.start_ns <= hi
    ]


def nearby(correlation: Any, request: Connection) -> list[Connection]:
    """`candidates` among a correlation's connections, building only those in the time window.

    The correlator numbers connections by start time (its `table.cstart_ns`), so a binary
    search finds the window without turning every connection of a long capture into objects.
    """
    starts = getattr(getattr(correlation, "table", None), "cstart_ns", None)
    if starts is None:
        return candidates(request, correlation.connections)
    starts = np.asarray(starts, dtype=np.int64)
    hi_ns = request.start_ns + (LOOKBACK_NS if is_dns(request) else 0)
    lo = int(np.searchsorted(starts, request.start_ns - LOOKBACK_NS, side="left"))
    hi = int(np.searchsorted(starts, hi_ns, side="right"))
    return candidates(request, [correlation.connection(i) for i in range(lo, hi)])


# --- the edge: decode the DNS packets of those connections ---------------------------------------


def read_dns_packets(
    connections: Iterable[Connection], frames: Mapping[str, Frames], reader: PayloadReader
) -> list[DnsPacket]:
    """Every DNS message of `connections` at each one's first point (the asker), in time order."""
    out: list[DnsPacket] = []
    for conn in connections:
        if not conn.points:
            continue
        point = conn.points[0]
        fr = frames.get(point)
        if fr is None:
            continue
        tcp = conn.protocol == "tcp"
        for j in conn.journeys:
            obs = next((o for o in j.observations if o.point == point), None)
            if obs is None or obs.payload_len <= 0:
                continue
            msg = dns_message(reader.read(fr, obs.frame), tcp=tcp)
            if msg is None:
                continue
            out.append(
                DnsPacket(conn.index, point, j.direction == "forward", obs.t_ns, msg, obs.frame)
            )
    out.sort(key=lambda p: p.t_ns)
    return out


@dataclass(frozen=True)
class DnsExchange:
    """One DNS question and its answer as the client's point saw them (`explain` tells each)."""

    point: str
    query: DnsMessage
    query_frame: int
    answer: DnsMessage | None = None
    answer_frame: int | None = None


def dns_exchanges(
    conn: Connection, frames: Mapping[str, Frames], reader: PayloadReader
) -> tuple[DnsExchange, ...]:
    """Every question and answer of a DNS connection, as its first point saw them."""
    if conn.client.dst.port not in DNS_PORTS or not conn.points:
        return ()
    point = conn.points[0]
    fr = frames.get(point)
    if fr is None:
        return ()
    tcp = conn.protocol == "tcp"
    queries: list[DnsExchange] = []
    answers: list[tuple[int, DnsMessage]] = []
    for j in conn.journeys:
        if j.retransmission:
            continue
        for o in j.observations:
            if o.point != point or o.payload_len <= 0:
                continue
            msg = dns_message(reader.read(fr, o.frame), tcp=tcp)
            if msg is None:
                continue
            if j.direction == "forward" and not msg.response:
                queries.append(DnsExchange(point, msg, o.frame))
            elif j.direction == "reverse" and msg.response:
                answers.append((o.frame, msg))
            break
    out: list[DnsExchange] = []
    used: set[int] = set()
    for q in queries:
        ans = None
        for k, (frame, msg) in enumerate(answers):
            if k in used or frame < q.query_frame:
                continue
            if msg.qname == q.query.qname and msg.qtype == q.query.qtype:
                used.add(k)
                ans = (frame, msg)
                break
        if ans is None:
            out.append(q)
        else:
            out.append(DnsExchange(q.point, q.query, q.query_frame, ans[1], ans[0]))
    return tuple(out)


# --- the pure core ----------------------------------------------------------------------------


def pair_queries(
    connection: Connection,
    packets: Sequence[DnsPacket],
    names: Mapping[str, str] | None = None,
) -> list[DnsQuery]:
    """The connection's queries, each with the first later answer carrying its ID and question.

    A query repeated with the same ID and question (the resolver's retry) is counted once, from
    its first send: the latency is what the application waited. `names` maps an address to what
    the run calls it (a pod or a Service), for `server_name` and `asked_name`.
    """
    names = names or {}
    mine = sorted((p for p in packets if p.connection == connection.index), key=lambda p: p.t_ns)
    asked = connection.client.dst
    server = connection.backend or asked
    out: list[DnsQuery] = []
    open_: dict[tuple[int, str, int], int] = {}  # (id, name, type) -> index in out
    for p in mine:
        m = p.message
        key = (m.ident, m.qname.lower(), m.qtype)
        if p.forward and not m.response:
            if key in open_:
                # A retry of a query still waiting for its answer: counted, not a new question.
                i = open_[key]
                out[i] = replace(out[i], sends=out[i].sends + 1)
                continue
            open_[key] = len(out)
            out.append(
                DnsQuery(
                    connection=connection.index,
                    point=p.point,
                    protocol=connection.protocol,
                    client=connection.client.src,
                    asked=asked,
                    server=server,
                    name=m.qname,
                    qtype=m.qtype_name,
                    start_ns=p.t_ns,
                    server_name=names.get(server.ip),
                    asked_name=names.get(asked.ip) if asked != server else None,
                    frame=p.frame,
                )
            )
        elif not p.forward and m.response and key in open_:
            i = open_.pop(key)
            q = out[i]
            out[i] = replace(
                q,
                rcode=m.rcode_name,
                answers=tuple(text for _, text in m.answers),
                latency_ns=p.t_ns - q.start_ns,
                answer_frame=p.frame,
            )
    return out


def search_domains(query_names: Iterable[str]) -> tuple[str, ...]:
    """The pod search list the names show ("default.svc.cluster.local", "svc.cluster.local",
    "cluster.local"), or () when no name is a `<name>.<namespace>.svc.<domain>` expansion."""
    for name in query_names:
        m = _POD_SEARCH.match(name.lower().rstrip("."))
        if m:
            ns, domain = m.group("ns"), m.group("domain")
            return (f"{ns}.svc.{domain}", f"svc.{domain}", domain)
    return ()


def _typed(name: str, search: Sequence[str]) -> str | None:
    """The name before search expansion, or None when `name` is no expansion."""
    low = name.lower().rstrip(".")
    for s in search:
        if low.endswith("." + s) and len(low) > len(s) + 1:
            return low[: -len(s) - 1]
    return None


def _stem(name: str) -> str:
    return name.lower().split(".", 1)[0]


def _cluster(queries: Sequence[DnsQuery], anchor: int, after_ns: int | None) -> list[DnsQuery]:
    """The queries for the anchor's name (same first label) with no gap over MAX_GAP_NS."""
    stem = _stem(queries[anchor].name)
    same = [q for q in queries if _stem(q.name) == stem]
    at = same.index(queries[anchor])
    lo = at
    while lo > 0 and same[lo].start_ns - same[lo - 1].start_ns <= MAX_GAP_NS:
        lo -= 1
    hi = at
    while (
        hi + 1 < len(same)
        and same[hi + 1].start_ns - same[hi].start_ns <= MAX_GAP_NS
        and (after_ns is None or same[hi + 1].start_ns <= after_ns)
    ):
        hi += 1
    return list(same[lo : hi + 1])


def _with_expansions(queries: Sequence[DnsQuery]) -> tuple[tuple[DnsQuery, ...], tuple[str, ...]]:
    search = search_domains(q.name for q in queries)
    marked = []
    for q in queries:
        exp = _typed(q.name, search) is not None if search else False
        marked.append(replace(q, expansion=exp))
    if not search:
        # No pod search list in sight: a longer name that starts with the shortest one asked
        # (e.g. "web.example.com.lab.internal" next to "web.example.com") is an expansion.
        shortest = min((q.name.lower().rstrip(".") for q in queries), key=len)
        marked = [replace(q, expansion=q.name.lower().startswith(shortest + ".")) for q in marked]
        if any(q.expansion for q in marked):
            return tuple(marked), ()
    return tuple(marked), search


def find_lookup(
    request: Connection,
    connections: Sequence[Connection],
    packets: Sequence[DnsPacket],
    names: Mapping[str, str] | None = None,
    asked: str | None = None,
) -> DnsLookup | None:
    """The DNS lookup that gave `request` its destination, or None when none was captured.

    For a request to any other port: the last query from the client's address before the
    request whose answer holds the destination address, and every query for the same name
    around it. For a request that is itself DNS: the queries for the name it asked.
    """
    by_index = {c.index: c for c in candidates(request, connections)}
    queries: list[DnsQuery] = []
    for c in by_index.values():
        queries.extend(pair_queries(c, packets, names))
    queries.sort(key=lambda q: (q.start_ns, q.connection))
    if not queries:
        return None
    # What the client connected to: the Service's address when a socket load-balancer put the
    # backend's on the wire (`asked`), else the request's own destination.
    dest = asked or request.client.dst.ip
    anchor: int | None = None
    if is_dns(request):
        anchor = next((i for i, q in enumerate(queries) if q.connection == request.index), None)
        after: int | None = None
    else:
        after = request.start_ns
        for i, q in enumerate(queries):
            if q.start_ns > request.start_ns:
                break
            if dest in q.answers:
                anchor = i
    if anchor is None:
        return None
    related, search = _with_expansions(_cluster(queries, anchor, after))
    return _assemble(related, search, dest)


def lookups(
    connections: Sequence[Connection],
    packets: Sequence[DnsPacket],
    names: Mapping[str, str] | None = None,
) -> list[DnsLookup]:
    """Every lookup in `connections`, whatever request it served, in time order.

    Queries from one client address for names with the same first label, with no gap over
    MAX_GAP_NS between them, are one lookup (as in `find_lookup`); its `address` is the first
    address a NOERROR answer gave, since no request says which one was used.
    """
    queries: list[DnsQuery] = []
    for c in connections:
        if is_dns(c):
            queries.extend(pair_queries(c, packets, names))
    queries.sort(key=lambda q: (q.start_ns, q.connection))
    groups: dict[tuple[str, str], list[list[DnsQuery]]] = {}
    for q in queries:
        runs = groups.setdefault((q.client.ip, _stem(q.name)), [])
        if runs and q.start_ns - runs[-1][-1].start_ns <= MAX_GAP_NS:
            runs[-1].append(q)
        else:
            runs.append([q])
    out = []
    for runs in groups.values():
        for run in runs:
            related, search = _with_expansions(run)
            out.append(_assemble(related, search, None))
    out.sort(key=lambda lk: (lk.queries[0].start_ns, lk.queries[0].connection))
    return out


def _assemble(
    related: tuple[DnsQuery, ...], search: tuple[str, ...], dest: str | None
) -> DnsLookup:
    """The lookup made of `related`: the name typed, and the answer holding `dest` (or, when
    no answer holds it, the first address a NOERROR answer gave)."""
    answered = next((q for q in related if dest is not None and dest in q.answers), None)
    if answered is None:
        answered = next((q for q in related if q.rcode == "NOERROR" and q.answers), None)
    address = None
    if answered is not None:
        address = dest if dest is not None and dest in answered.answers else answered.answers[0]
    typed = related[-1].name
    for q in related:
        t = _typed(q.name, search) if search else None
        if t is not None:
            typed = t
            break
    else:
        if any(q.expansion for q in related):
            typed = min((q.name for q in related), key=len)
    elapsed = None
    if answered is not None and answered.latency_ns is not None:
        elapsed = answered.start_ns + answered.latency_ns - related[0].start_ns
    return DnsLookup(
        name=typed,
        queries=related,
        address=address,
        answered_by=answered,
        elapsed_ns=elapsed,
        search=search,
    )


def run_names(services: Iterable[Service]) -> dict[str, str]:
    """Address -> name from a manifest's services: "ns/pod" for endpoints, "ns/svc" for IPs."""
    out: dict[str, str] = {}
    for s in services:
        for ip in s.cluster_ips:
            out.setdefault(ip, f"{s.namespace}/{s.name}")
        for e in s.endpoints:
            if e.pod:
                out.setdefault(e.address, e.pod)
    return out


def answered_names(found: Iterable[DnsLookup]) -> dict[str, str]:
    """Address -> the name whose lookup answered it, over the given lookups."""
    out: dict[str, str] = {}
    for lk in found:
        for q in lk.queries:
            for a in q.answers:
                out.setdefault(a, lk.name)
    return out

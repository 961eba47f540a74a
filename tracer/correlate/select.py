"""Choosing the connection to show: `--match` specs and the default choice.

`parse_match` turns `src=10.244.1.7:53700,dst=10.96.0.10:80,proto=tcp` into a `MatchSpec`;
`select` picks a connection from a `Correlation` without building objects for the others: by
default the first connection seen at the most points, except that a DNS lookup which only
resolves the name for a later connection of the same client gives way to that connection.
Pure; raises UsageError for a spec that does not parse and NothingMatchedError when nothing fits.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from tracer.correlate.correlation import Correlation
from tracer.correlate.scope import link_scope_rows
from tracer.correlate.table import PROTO_NAMES
from tracer.errors import NothingMatchedError, UsageError
from tracer.model import Connection, Endpoint

DNS_PORT = 53
# A client connects right after the name resolves; resolver retries (5 s timeouts, two
# attempts per search-list name) can stretch the lookup, never beyond this.
DNS_FOLLOW_WINDOW_NS = 30_000_000_000

_FORMS = "src=IP[:PORT], dst=IP[:PORT] or proto=tcp|udp|icmp|icmpv6 (IPv6 as [fd00::1]:80)"


@dataclass(frozen=True)
class MatchSpec:
    """Terms that must all hold for some tuple of the connection (any point, either side of NAT).

    An endpoint without a port matches any port.
    """

    text: str
    srcs: tuple[Endpoint, ...] = ()  # every one must hold (src=A,src=B: seen from A and from B)
    dsts: tuple[Endpoint, ...] = ()  # e.g. the Service address and, after DNAT, the pod's
    protos: tuple[str, ...] = ()

    def __repr__(self) -> str:
        return f"parse_match({self.text!r})"


def _endpoint(term: str, value: str) -> Endpoint:
    host, port_text = value, None
    if value.startswith("["):
        close = value.find("]")
        if close < 0:
            raise UsageError(f"--match term {term!r}: missing ']' (expected {_FORMS})")
        host, rest = value[1:close], value[close + 1 :]
        if rest:
            if not rest.startswith(":"):
                raise UsageError(f"--match term {term!r}: expected [IPv6]:PORT")
            port_text = rest[1:]
    elif value.count(":") == 1:
        host, port_text = value.split(":")
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        raise UsageError(
            f"--match term {term!r}: {host!r} is not an IP address (expected {_FORMS})"
        ) from None
    port: int | None = None
    if port_text is not None:
        if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
            raise UsageError(f"--match term {term!r}: port must be 0-65535, got {port_text!r}")
        port = int(port_text)
    return Endpoint(str(ip), port)


def parse_match(text: str) -> MatchSpec:
    """Parse `key=value[,key=value...]`; every term must hold."""
    srcs: list[Endpoint] = []
    dsts: list[Endpoint] = []
    protos: list[str] = []
    terms = [t.strip() for t in text.split(",")]
    if not text.strip() or any(not t for t in terms):
        raise UsageError(f"--match {text!r}: empty term (expected {_FORMS})")
    for term in terms:
        key, eq, value = term.partition("=")
        key, value = key.strip().lower(), value.strip()
        if not eq or not value:
            raise UsageError(f"--match term {term!r}: expected KEY=VALUE ({_FORMS})")
        if key == "src":
            srcs.append(_endpoint(term, value))
        elif key == "dst":
            dsts.append(_endpoint(term, value))
        elif key == "proto":
            if value.lower() not in PROTO_NAMES.values():
                raise UsageError(f"--match term {term!r}: proto must be tcp, udp, icmp or icmpv6")
            protos.append(value.lower())
        else:
            raise UsageError(f"--match term {term!r}: unknown key {key!r} (expected {_FORMS})")
    # Repeated keys all hold (a connection seen both before and after a NAT), none overrides.
    return MatchSpec(text, tuple(srcs), tuple(dsts), tuple(dict.fromkeys(protos)))


def _address_ids(addresses: tuple[str, ...], ip: str) -> npt.NDArray[np.int64]:
    want = ipaddress.ip_address(ip)
    ids = []
    for i, a in enumerate(addresses):
        try:
            if ipaddress.ip_address(a) == want:
                ids.append(i)
        except ValueError:
            continue
    return np.array(ids, dtype=np.int64)


def _matching(corr: Correlation, spec: MatchSpec) -> npt.NDArray[np.bool_]:
    """Which connections satisfy every term (vectorised over all rows)."""
    tb = corr.table
    n_c = len(corr)
    ok = np.ones(n_c, dtype=bool)
    if tb.pidx.shape[0] == 0:
        return ok
    jlen = np.diff(tb.jstart)
    row_fwd = np.repeat(tb.jforward, jlen)
    jconn = np.repeat(np.arange(n_c), np.diff(tb.cstart))
    row_conn = np.repeat(jconn, jlen)
    # Orient every row's tuple as the forward direction at its point.
    fsrc = np.where(row_fwd, tb.src, tb.dst)
    fdst = np.where(row_fwd, tb.dst, tb.src)
    fsport = np.where(row_fwd, tb.sport, tb.dport)
    fdport = np.where(row_fwd, tb.dport, tb.sport)
    for proto in spec.protos:
        code = next(k for k, v in PROTO_NAMES.items() if v == proto)
        ok &= np.bincount(row_conn, weights=tb.proto == code, minlength=n_c) > 0
    terms = [(ep, fsrc, fsport) for ep in spec.srcs] + [(ep, fdst, fdport) for ep in spec.dsts]
    for ep, addr, port in terms:
        hit = np.isin(addr, _address_ids(tb.addresses, ep.ip))
        if ep.port is not None:
            hit &= (port == ep.port) & np.isin(tb.proto, (6, 17))
        ok &= np.bincount(row_conn, weights=hit, minlength=n_c) > 0
    return ok


def select(
    correlation: Correlation, *, index: int | None = None, match: MatchSpec | None = None
) -> Connection:
    """The connection to show: by index, by match, or the first one seen at the most points."""
    n_c = len(correlation)
    if n_c == 0:
        raise NothingMatchedError(
            "no connection was found in the captures",
            hint="check that the captures overlap the request in time and hold IP traffic",
        )
    ok = _matching(correlation, match) if match is not None else np.ones(n_c, dtype=bool)
    if index is not None:
        if not 0 <= index < n_c:
            raise NothingMatchedError(f"no connection {index}: there are {n_c} (0-{n_c - 1})")
        if match is not None and not ok[index]:
            raise NothingMatchedError(f"connection {index} does not match {match.text!r}")
        return correlation.connection(index)
    if match is not None and not ok.any():
        raise NothingMatchedError(f"no connection matches {match.text!r}")
    points = np.where(ok, correlation.table.cpoints, -1)
    if match is None and n_c > 1:
        # Link-scope chatter (router and neighbour solicitations, MLD, IGMP) is never the
        # request: it loses to any other connection.
        tb = correlation.table
        first = tb.jstart[tb.cstart[:-1]]
        chatter = link_scope_rows(
            tb.addresses,
            tb.column("src", first),
            tb.column("dst", first),
            tb.column("proto", first),
            tb.column("icmp_type", first),
        )
        points = np.where(chatter & ok, 0, points)
        ok = ok & ~chatter
    pick = int(np.argmax(points))
    if match is None or not match.protos:
        pick = _past_dns(correlation, pick, ok)
    return correlation.connection(pick)


def _past_dns(corr: Correlation, pick: int, ok: npt.NDArray[np.bool_]) -> int:
    """The connection a DNS lookup `pick` resolved the name for, else `pick` itself.

    A lookup followed (within DNS_FOLLOW_WINDOW_NS) by a connection from the same client that is
    not DNS only served that connection: the request is the connection. Among several, the one
    seen at the most points, the first on ties. A run of lookups only keeps the lookup.
    """
    tb = corr.table
    n_c = len(corr)
    jlen = np.diff(tb.jstart)
    row_fwd = np.repeat(tb.jforward, jlen)
    jconn = np.repeat(np.arange(n_c), np.diff(tb.cstart))
    row_conn = np.repeat(jconn, jlen)
    fdport = np.where(row_fwd, tb.dport, tb.sport)
    dns_row = np.isin(tb.proto, (6, 17)) & (fdport == DNS_PORT)
    is_dns = np.bincount(row_conn, weights=dns_row, minlength=n_c) > 0
    if not is_dns[pick]:
        return pick
    # The client's address: the source of each connection's first forward packet where it was
    # first seen (the tuple before any NAT).
    n_j = int(tb.jforward.shape[0])
    big = np.iinfo(np.int64).max
    first = np.full(n_c, big, dtype=np.int64)
    np.minimum.at(first, jconn, np.where(tb.jforward, np.arange(n_j), big))
    has_fwd = first != big
    first = np.where(has_fwd, first, tb.cstart[:-1])
    row0 = tb.jstart[first]
    client = np.where(has_fwd, tb.src[row0], tb.dst[row0])
    # An ICMP error is an answer, never a request of its own (its table has no ICMP type: an
    # error is the only ICMP that a node, not the client, sends first and never gets answered).
    icmp = np.isin(tb.proto[row0], (1, 58))
    # A dual-stack client asks over one family and connects over the other: a connection first
    # seen at the same client's capture point is the same client whatever its address.
    p0 = tb.pidx[row0].astype(np.int64)
    at_client = np.array([p.role in ("client", "external") for p in corr.points] + [False])
    same_client = (client == client[pick]) | ((p0 == p0[pick]) & at_client[p0[pick]])
    start = tb.cstart_ns
    follower = (
        ok
        & ~is_dns
        & same_client
        & (start > start[pick])
        & (start - start[pick] <= DNS_FOLLOW_WINDOW_NS)
        & ~(icmp & ~has_fwd)
    )
    if not follower.any():
        return pick
    return int(np.argmax(np.where(follower, tb.cpoints, -1)))

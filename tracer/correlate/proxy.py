"""L7 proxy hops: join the client→proxy connection to the proxy→backend one it caused.

An L7 proxy (an Ingress controller, a sidecar) ends the client's TCP connection and opens its
own, so no packet identity survives it. The two legs are joined by the HTTP request they carry
(method, target, Host, X-Request-ID or the W3C traceparent when present) and by time: the
proxy's request leaves after the client's request reached it, and the backend's response
reaches the proxy before the proxy answers the client. Pure: the requests are decoded from
payload bytes by `tracer.protocols.http.http_request_info`; `l7_requests` takes the byte
reader as a function so that the file access stays at the edge. Nothing here prints.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from tracer.correlate.correlation import Correlation
from tracer.correlate.table import NO_TIME
from tracer.model import Connection, Journey, Observation, Stitch
from tracer.protocols.http import HttpRequestInfo, http_request_info

# A proxy hands a request on within this long (nginx's default proxy_connect_timeout is 60 s;
# a request that waited longer than that would have failed).
MAX_PROXY_WAIT_NS = 60_000_000_000
# How many proxies a request may cross in a row (ingress -> sidecar -> ...).
MAX_LEGS = 4


# ----------------------------------------------------------------------------- legs


@dataclass(frozen=True)
class _Leg:
    conn: Connection
    request: Journey | None  # the first request data packet (forward)
    response: Journey | None  # the first response data packet after it (reverse)
    first: Journey  # the first forward packet (the SYN): where the leg starts and ends


def _leg(conn: Connection) -> _Leg:
    js = conn.journeys
    req = next(
        (j for j in js if j.direction == "forward" and j.kind == "data" and not j.retransmission),
        None,
    )
    resp = None
    if req is not None:
        after = js[js.index(req) + 1 :]
        resp = next((j for j in after if j.direction == "reverse" and j.kind == "data"), None)
    first = next((j for j in js if j.direction == "forward"), js[0])
    return _Leg(conn, req, resp, first)


def request_sightings(connection: Connection) -> tuple[tuple[str, int], ...]:
    """(point, frame) of every sighting of the connection's first request data packet."""
    req = _leg(connection).request
    return tuple((o.point, o.frame) for o in req.observations) if req is not None else ()


def _chain_candidates(corr: Correlation, index: int) -> list[int]:
    """Connections that may be legs of the same proxied request (never the whole capture).

    A leg is a candidate of another only where `_score` could join them: they meet at one
    point, the handed-on request leaves within MAX_PROXY_WAIT_NS after the client's arrived,
    and the backend's response came back before the client's went out (the legs nest). Tested
    on columns for all connections at once, so that a capture of one point, where every
    connection starts and ends at the same point, does not make every connection a candidate.
    """
    start_pt, end_pt = corr.leg_ends
    rt = corr.request_times
    has_req = rt.req_first != NO_TIME
    has_resp = rt.resp_first != NO_TIME

    def nests(client: int | slice, server: int | slice) -> npt.NDArray[np.bool_]:
        """`_score`'s timing test: the server leg's request leaves within the wait after the
        client leg's arrived, and its response came back before the client's went out."""
        wait = rt.req_first[server] - rt.req_last[client]
        inside = (
            ~has_resp[client] | ~has_resp[server] | (rt.resp_last[server] <= rt.resp_first[client])
        )
        return (
            has_req[client] & has_req[server] & (wait >= 0) & (wait <= MAX_PROXY_WAIT_NS) & inside
        )

    seen = {index}
    frontier = [index]
    for _ in range(MAX_LEGS):
        nxt: list[int] = []
        for c in frontier:
            if not has_req[c]:
                continue
            # c as the client leg (who carried its request on?) and as the server leg (whose
            # request is it?).
            down = np.flatnonzero(nests(c, slice(None)) & (start_pt == end_pt[c]))
            up = np.flatnonzero(nests(slice(None), c) & (end_pt == start_pt[c]))
            for k in np.concatenate([down, up]).tolist():
                if k not in seen:
                    seen.add(k)
                    nxt.append(k)
        frontier = nxt
    return sorted(seen)


def l7_requests(
    corr: Correlation, connection: Connection, read: Callable[[str, int], bytes]
) -> dict[int, HttpRequestInfo]:
    """Decode the first HTTP request of `connection` and of every connection it may be
    stitched to, reading payload bytes through `read(point, frame)` (the caller's I/O)."""
    out: dict[int, HttpRequestInfo] = {}
    for k in _chain_candidates(corr, connection.index):
        conn = connection if k == connection.index else corr.connection(k)
        if conn.protocol != "tcp":
            continue
        for point, frame in request_sightings(conn):
            info = http_request_info(read(point, frame))
            if info is not None:
                out[k] = info
                break
    return out


# ----------------------------------------------------------------------------- stitching


def _t(corr: Correlation, o: Observation) -> int:
    return corr.corrected(o)


@dataclass(frozen=True)
class _Score:
    ok: bool
    rank: int  # higher is better
    reasons: tuple[str, ...]
    proxy_ns: int | None


def _score(
    corr: Correlation,
    a: _Leg,
    b: _Leg,
    ia: HttpRequestInfo | None,
    ib: HttpRequestInfo | None,
    decoded: bool,
) -> _Score:
    """Can `b` be the request of `a` handed on by a proxy, and how well do they agree?"""
    no = _Score(False, 0, (), None)
    if a.request is None or b.request is None:
        return no
    # The proxy's own point saw both: the client leg end there and the server leg start.
    if a.first.observations[-1].point != b.first.observations[0].point:
        return no
    req_in = _t(corr, a.request.observations[-1])
    req_out = _t(corr, b.request.observations[0])
    if not 0 <= req_out - req_in <= MAX_PROXY_WAIT_NS:
        return no
    reasons: list[str] = []
    proxy_ns: int | None = None
    if a.response is not None and b.response is not None:
        resp_in = _t(corr, b.response.observations[-1])
        resp_out = _t(corr, a.response.observations[0])
        if resp_out < resp_in:
            return no  # the proxy answered before the backend did: not this backend
        proxy_ns = (req_out - req_in) + (resp_out - resp_in)
        reasons.append("the backend's request and response nest inside the client's")
    else:
        reasons.append("the proxy's request leaves after the client's arrived")
    rank = 0
    if ia is not None and ib is not None:
        if ia.request_id and ia.request_id == ib.request_id:
            reasons.insert(0, f"same X-Request-ID {ia.request_id}")
            rank += 8
        if ia.trace_id and ia.trace_id == ib.trace_id:
            reasons.insert(0, f"same traceparent trace-id {ia.trace_id}")
            rank += 8
        if ia.method != ib.method:
            return no
        same_target = ia.target == ib.target
        same_host = ia.host_name is not None and ia.host_name == ib.host_name
        if rank == 0 and not (same_target or same_host):
            return no
        what = [f"{ia.method}"]
        if same_target:
            what.append(ia.target)
            rank += 2
        if same_host:
            what.append(f"Host {ib.host_name}")
            rank += 1
        reasons.insert(len(reasons) - 1, "same request " + " ".join(what))
        rank += 1
    elif decoded:
        # A request was decoded on one side only (TLS, HTTP/2): time alone must carry it.
        reasons.append("the HTTP request could be read on one leg only")
    else:
        reasons.append("no HTTP request was decoded: joined on time only")
    return _Score(True, rank, tuple(reasons), proxy_ns)


def _confidence(best: _Score, rivals: int) -> str:
    if best.rank >= 8:
        return "high"
    if best.rank >= 3 and rivals == 0:
        return "high"
    if best.rank >= 1:
        return "medium"
    return "low" if rivals == 0 else "none"


def _best(
    corr: Correlation,
    legs: Mapping[int, _Leg],
    l7: Mapping[int, HttpRequestInfo],
    a: int,
    candidates: Sequence[int],
    downstream: bool,
) -> Stitch | None:
    scored: list[tuple[int, int, _Score]] = []
    for k in candidates:
        if k == a:
            continue
        client, server = (a, k) if downstream else (k, a)
        s = _score(corr, legs[client], legs[server], l7.get(client), l7.get(server), bool(l7))
        if s.ok:
            req_out = legs[server].request
            gap = _t(corr, req_out.observations[0]) if req_out is not None else 0
            scored.append((k, gap, s))
    if not scored:
        return None
    top = max(s.rank for _, _, s in scored)
    best_rank = [x for x in scored if x[2].rank == top]
    # Among equals, the earliest handed-on request (downstream) or the latest client request
    # (upstream) is the one closest in time to this leg.
    best_rank.sort(key=lambda x: x[1] if downstream else -x[1])
    k, _, s = best_rank[0]
    rivals = len(best_rank) - 1
    conf = _confidence(s, rivals)
    if conf == "none":
        return None
    reasons = s.reasons
    if rivals:
        reasons = (*reasons, f"{rivals} other connection(s) fit as well; the closest in time won")
    client, server = (a, k) if downstream else (k, a)
    proxy = legs[client].first.observations[-1].point
    return Stitch(client, server, proxy, conf, reasons, s.proxy_ns)


def stitch(
    corr: Correlation, connection: Connection, l7: Mapping[int, HttpRequestInfo] | None = None
) -> tuple[tuple[int, ...], tuple[Stitch, ...]]:
    """The chain of connections one request crossed (client first) and the stitches between.

    A connection that no proxy leg joins gives `((connection.index,), ())`.
    """
    l7 = l7 or {}
    if connection.protocol != "tcp":
        return (connection.index,), ()
    cands = [k for k in _chain_candidates(corr, connection.index)]
    conns = {k: (connection if k == connection.index else corr.connection(k)) for k in cands}
    legs = {k: _leg(c) for k, c in conns.items() if c.protocol == "tcp"}
    cands = [k for k in cands if k in legs]
    chain = [connection.index]
    stitches: list[Stitch] = []
    for _ in range(MAX_LEGS):  # upstream: who handed this request to us?
        s = _best(corr, legs, l7, chain[0], [k for k in cands if k not in chain], False)
        if s is None:
            break
        chain.insert(0, s.client_leg)
        stitches.insert(0, s)
    for _ in range(MAX_LEGS):  # downstream: where did the proxy send it?
        s = _best(corr, legs, l7, chain[-1], [k for k in cands if k not in chain], True)
        if s is None:
            break
        chain.append(s.server_leg)
        stitches.append(s)
    return tuple(chain), tuple(stitches)

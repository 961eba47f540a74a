"""One connection's path out and back, with clock-corrected hop times and latency.

`build_path` takes a `Correlation` and one of its connections and returns a `model.Path`: the
hops of the first request packet (the SYN, the query, the echo request) and of its first reply,
the translations between hops, and where the time went (connect, server, total, per segment
between consecutive points). Pure: no I/O; negative delays are kept, flagged and warned about.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import replace

from tracer.correlate.correlation import Correlation
from tracer.correlate.proxy import stitch
from tracer.model import (
    CapturePoint,
    Connection,
    Hop,
    Journey,
    Latency,
    Observation,
    Path,
    Request,
    Segment,
    Stitch,
    Translation,
    Tuple5,
    translation_kind,
)
from tracer.protocols.http import HttpRequestInfo
from tracer.protocols.icmp import icmp_name

_REQUEST_KIND = {"tcp": "syn"}
_REPLY_KIND = {"tcp": "syn-ack"}


def _first(journeys: Sequence[Journey], direction: str, kind: str | None) -> Journey | None:
    for j in journeys:
        if j.direction == direction and (kind is None or j.kind == kind):
            return j
    return None


def _hops(
    corr: Correlation, journey: Journey, t0: int, points: dict[str, CapturePoint]
) -> tuple[Hop, ...]:
    out: list[Hop] = []
    prev: Observation | None = None
    reply = journey.direction == "reverse"
    for o in journey.observations:
        tr: Translation | None = None
        if prev is not None:
            kind = translation_kind(prev.tuple5, o.tuple5, reply)
            if kind is not None:
                tr = Translation(kind, prev.tuple5, o.tuple5)
        p = points.get(o.point)
        out.append(
            Hop(
                point=o.point,
                role=p.role if p else "node",
                node=p.node if p else None,
                interface=o.interface,
                direction=o.direction,
                t_ns=corr.corrected(o) - t0,
                tuple5=o.tuple5,
                ttl=o.ttl,
                translation=tr,
                frame=o.frame,
                note=offload_note(o),
            )
        )
        prev = o
    return tuple(out)


def local_redirect(conn: Connection) -> Translation | None:
    """The REDIRECT (or DNAT) done inside the client's own namespace after its capture point.

    A sidecar's capture rules rewrite the app's SYN in nat OUTPUT before it reaches loopback,
    where the pod point sees it, and un-rewrite the reply before it does: at that point the
    request reads app -> 127.0.0.1:15001 and its reply ClusterIP -> app. The reply's source is
    what the app connected to. None when the reply mirrors the request (no such rewrite).
    """
    js = conn.journeys
    fwd = _first(js, "forward", None)
    rev = _first(js, "reverse", None)
    if fwd is None or rev is None or not fwd.observations:
        return None
    sent = fwd.observations[0]
    back = next((o for o in reversed(rev.observations) if o.point == sent.point), None)
    if back is None:
        return None
    req, rep = sent.tuple5, back.tuple5
    if rep.dst != req.src or rep.src == req.dst:
        return None
    asked = Tuple5(req.proto, req.src, rep.src)
    loopback = req.dst.ip.startswith("127.") or req.dst.ip == "::1"
    return Translation("REDIRECT" if loopback else "DNAT", asked, req)


def _with_local_redirect(conn: Connection, hops: tuple[Hop, ...]) -> tuple[Hop, ...]:
    tr = local_redirect(conn)
    if tr is None or not hops or hops[0].translation is not None:
        return hops
    note = (
        f"the client asked for {tr.before.dst}; a rule in its own network namespace (a mesh"
        f" sidecar's capture rules) sent it to {tr.after.dst} before the packet reached the capture"
    )
    return (replace(hops[0], translation=tr, note=hops[0].note or note), *hops[1:])


def asked_destination(conn: Connection) -> str:
    """Where the client asked to go: before a REDIRECT in its own namespace, else its tuple's."""
    tr = local_redirect(conn)
    return str(tr.before.dst if tr is not None else conn.client.dst)


def offload_note(o: Observation) -> str | None:
    """What a super-segment's time means (None for an ordinary packet)."""
    if o.offload is None:
        return None
    how = (
        "a GRO merge, complete when its last segment arrived"
        if o.offload == "last byte"
        else "captured on transmit, before TSO/GSO cut it"
    )
    return (
        f"offload super-segment of {o.payload_len} bytes matched by TCP sequence range: "
        f"the time of its {o.offload} ({how})"
    )


def _offload_warning(conn: Connection) -> str | None:
    """One line per connection that holds super-segments: where, and which byte's time."""
    seen: dict[tuple[str, str], int] = {}
    for j in conn.journeys:
        for o in j.observations:
            if o.offload is not None:
                seen[(o.point, o.offload)] = seen.get((o.point, o.offload), 0) + 1
    if not seen:
        return None
    parts = ", ".join(f"{n} at {pt} (time of the {b})" for (pt, b), n in seen.items())
    return (
        f"offload super-segments matched to wire segments by TCP sequence range: {parts}; "
        f"latency through them is that of the byte named"
    )


def _icmp_reply(
    corr: Correlation,
    errors: Sequence[int],
    t0: int,
    points: dict[str, CapturePoint],
    kind: str,
    warnings: list[str],
) -> tuple[Hop, ...]:
    """The way back of an ICMP error that answered the request instead of the server.

    Each error connection is the error with one outer tuple (a node that un-NATs the quote
    rewrites the error's addresses too, which makes a new tuple): their first packets, in the
    order they were seen, are the error's whole way back to the client.
    """
    hops: list[Hop] = []
    for k in errors:
        journey = corr.connection(k).journeys[0]
        more = list(_hops(corr, journey, t0, points))
        if hops and more:
            tr = translation_kind(hops[-1].tuple5, more[0].tuple5, True)
            more[0] = replace(
                more[0],
                translation=Translation(tr, hops[-1].tuple5, more[0].tuple5) if tr else None,
            )
        hops.extend(more)
    if hops:
        origin = hops[0]
        frames = next(
            (pf.frames for pf in corr.point_frames if pf.point.name == origin.point), None
        )
        name = "error"
        if frames is not None and origin.frame is not None:
            icmp_type = int(frames.columns["icmp_type"][origin.frame])
            code = int(frames.columns["icmp_code"][origin.frame])
            name = icmp_name(icmp_type, code, v6=origin.tuple5.proto == "icmpv6")
        warnings.append(
            f"the {kind.upper() if kind in ('syn', 'syn-ack') else kind} was answered by ICMP {name} from {origin.tuple5.src.ip} (first seen "
            f"at {origin.point}), which quotes it: the reverse path is the error's"
        )
    return tuple(hops)


def _at(journey: Journey, point: str) -> list[Observation]:
    return [o for o in journey.observations if o.point == point]


def _point_order(journey: Journey) -> list[str]:
    seen: list[str] = []
    for o in journey.observations:
        if o.point not in seen:
            seen.append(o.point)
    return seen


def _segments(
    corr: Correlation, conn: Connection, first: Journey, warnings: list[str]
) -> tuple[Segment, ...]:
    order = _point_order(first)
    out: list[Segment] = []
    for a, b in zip(order, order[1:], strict=False):

        def delay(j: Journey, a: str = a, b: str = b) -> int | None:
            at_a, at_b = _at(j, a), _at(j, b)
            if not at_a or not at_b:
                return None
            return corr.corrected(at_b[0]) - corr.corrected(at_a[-1])

        first_ns = delay(first)
        if first_ns is None:
            continue
        samples = [
            d
            for j in conn.journeys
            if j.direction == "forward"
            for d in [delay(j)]
            if d is not None
        ]
        median = int(statistics.median(samples)) if samples else first_ns
        negative = first_ns < 0 or median < 0
        if negative:
            warnings.append(
                f"segment {a} -> {b}: negative delay after clock correction "
                f"(first {first_ns} ns, median {median} ns); the clock offset is off by at "
                f"least that much"
            )
        out.append(
            Segment(a, b, first_ns, median, len(samples), negative, _cross_bound(corr, a, b))
        )
    return tuple(out)


def _cross_bound(corr: Correlation, a: str, b: str) -> int | None:
    """The clock error on a delay from point a to point b (None on one clock)."""
    domain = {p.name: p.node if p.node is not None else p.name for p in corr.points}
    da, db = domain.get(a, a), domain.get(b, b)
    if da == db:
        return None
    bounds = {c.node: c.error_bound_ns for c in corr.clocks}
    ref = corr.clocks[0].reference if corr.clocks else None
    parts = [0 if d == ref else bounds.get(d) for d in (da, db)]
    if any(x is None or x < 0 for x in parts):
        return -1
    return sum(x for x in parts if x is not None)


def _latency(
    corr: Correlation,
    conn: Connection,
    first: Journey,
    reply: Journey | None,
    warnings: list[str],
) -> Latency:
    client = first.observations[0].point
    server = first.observations[-1].point
    js = conn.journeys
    connect: int | None = None
    total: int | None = None
    server_ns: int | None = None
    if conn.protocol == "tcp":
        syn_at = _at(first, client)
        if reply is not None and reply.kind == "syn-ack" and _at(reply, client):
            connect = _at(reply, client)[-1].t_ns - syn_at[0].t_ns
        req = [j for j in js if j.direction == "forward" and j.kind == "data"]
        resp = [j for j in js if j.direction == "reverse" and j.kind == "data"]
        req_c = [o.t_ns for j in req for o in _at(j, client)[:1]]
        resp_c = [o.t_ns for j in resp for o in _at(j, client)[-1:]]
        if req_c and resp_c:
            start = min(req_c)
            later = [t for t in resp_c if t >= start]
            total = max(later) - start if later else None
        resp_s = [o.t_ns for j in resp for o in _at(j, server)[:1]]
        if resp_s:
            out_first = min(resp_s)
            req_s = [o.t_ns for j in req for o in _at(j, server)[-1:] if o.t_ns <= out_first]
            if req_s:
                server_ns = out_first - max(req_s)
    elif reply is not None:
        if _at(reply, client):
            total = _at(reply, client)[-1].t_ns - _at(first, client)[0].t_ns
        if _at(reply, server) and _at(first, server):
            server_ns = _at(reply, server)[0].t_ns - _at(first, server)[-1].t_ns
    for name, value in (("total", total), ("connect", connect), ("server", server_ns)):
        if value is not None and value < 0:
            warnings.append(f"{name} time is negative ({value} ns): packets out of order")
    return Latency(total, connect, server_ns, _segments(corr, conn, first, warnings))


def build_path(
    correlation: Correlation,
    connection: Connection,
    *,
    l7: Mapping[int, HttpRequestInfo] | None = None,
) -> Path:
    """The path of the connection's first request packet and its first reply.

    With `l7` (the decoded first HTTP request per connection index, see
    `proxy.l7_requests`), a connection that an L7 proxy joins to another is traced as one
    request across every leg (see `Path.stitches`); without it, connections stay separate.
    """
    if l7 is not None and connection.protocol == "tcp":
        chain, stitches = stitch(correlation, connection, l7)
        if stitches:
            return _stitched(correlation, connection, chain, stitches)
    js = connection.journeys
    proto = connection.protocol
    first = _first(js, "forward", _REQUEST_KIND.get(proto)) or _first(js, "forward", None) or js[0]
    after = js[js.index(first) + 1 :]
    reply = _first(after, "reverse", _REPLY_KIND.get(proto)) or _first(after, "reverse", None)
    warnings: list[str] = list(correlation.warnings)
    if first.direction != "forward":
        warnings.append("no packet from the client was captured: showing a reply's path")
    points = {p.name: p for p in correlation.points}
    t0 = correlation.corrected(first.observations[0])
    forward = _with_local_redirect(connection, _hops(correlation, first, t0, points))
    reverse = _hops(correlation, reply, t0, points) if reply is not None else ()
    if reply is None:
        errors = correlation.icmp_links.get(connection.index, ())
        if errors:
            reverse = _icmp_reply(correlation, errors, t0, points, first.kind, warnings)
        else:
            warnings.append("no reply was captured for this request")
    latency = _latency(correlation, connection, first, reply, warnings)
    offload = _offload_warning(connection)
    if offload is not None:
        warnings.append(offload)
    backend = str(connection.backend) if connection.backend is not None else None
    request = Request(
        index=connection.index,
        protocol=proto,
        client=str(connection.client.src),
        destination=asked_destination(connection),
        backend=backend,
        summary=connection.summary,
        start_ns=connection.start_ns,
    )
    return Path(
        request=request,
        forward=forward,
        reverse=reverse,
        latency=latency,
        clocks=correlation.clocks,
        warnings=tuple(dict.fromkeys(warnings)),
        points=correlation.points,
        notes=correlation.notes,
    )


# ----------------------------------------------------------------------------- L7 proxies


def _data_journeys(conn: Connection) -> tuple[Journey, Journey | None]:
    js = conn.journeys
    req = next(
        (j for j in js if j.direction == "forward" and j.kind == "data" and not j.retransmission),
        None,
    ) or (_first(js, "forward", None) or js[0])
    after = js[js.index(req) + 1 :]
    resp = _first(after, "reverse", "data") or _first(after, "reverse", None)
    return req, resp


def _as_proxy(hops: tuple[Hop, ...]) -> tuple[Hop, ...]:
    """The leg's first hop is the proxy sending: it shows as the proxy's own hop."""
    if not hops:
        return hops
    return (replace(hops[0], kind="proxy", translation=None), *hops[1:])


def _stitched(
    corr: Correlation, selected: Connection, chain: Sequence[int], stitches: Sequence[Stitch]
) -> Path:
    """One request through every leg: the request's data packet out, the response back."""
    conns = [selected if k == selected.index else corr.connection(k) for k in chain]
    points = {p.name: p for p in corr.points}
    pairs = [_data_journeys(c) for c in conns]
    t0 = corr.corrected(pairs[0][0].observations[0])
    forward: list[Hop] = []
    for i, (req, _) in enumerate(pairs):
        hops = _hops(corr, req, t0, points)
        forward.extend(_as_proxy(hops) if i else _with_local_redirect(conns[0], hops))
    reverse: list[Hop] = []
    last = len(pairs) - 1
    for i in range(last, -1, -1):
        resp = pairs[i][1]
        if resp is None:
            break  # the answer stopped here: nothing further back was seen
        hops = _hops(corr, resp, t0, points)
        reverse.extend(_as_proxy(hops) if i < last and reverse else hops)
    warnings: list[str] = list(corr.warnings)
    # The stitch is said in full in the report's L7 proxy section: a note, not a warning.
    notes: list[str] = list(corr.notes)
    for s in stitches:
        notes.append(
            f"an L7 proxy at {s.proxy} carries the request from connection #{s.client_leg} on "
            f"as connection #{s.server_leg} (confidence {s.confidence}: {'; '.join(s.reasons)})"
        )
    if pairs[-1][1] is None:
        warnings.append("no response was captured on the last leg")
    first_lat = _latency(corr, conns[0], _syn_or_first(conns[0]), _reply_of(conns[0]), warnings)
    last_lat = _latency(corr, conns[-1], _syn_or_first(conns[-1]), _reply_of(conns[-1]), warnings)
    segs: list[Segment] = []
    for c in conns:
        segs.extend(_segments(corr, c, _syn_or_first(c), warnings))
    proxy_times = [s.proxy_ns for s in stitches]
    proxy_ns = (
        sum(p for p in proxy_times if p is not None)
        if any(p is not None for p in proxy_times)
        else None
    )
    latency = Latency(
        first_lat.total_ns, first_lat.connect_ns, last_lat.server_ns, tuple(segs), proxy_ns
    )
    backend = conns[-1].backend or conns[-1].client.dst
    head = conns[0]
    request = Request(
        # The header shows the client leg's tuple: the index is that leg's too.
        index=head.index,
        protocol="tcp",
        client=str(head.client.src),
        destination=asked_destination(head),
        backend=str(backend),
        summary=selected.summary,
        start_ns=head.start_ns,
    )
    return Path(
        request=request,
        forward=tuple(forward),
        reverse=tuple(reverse),
        latency=latency,
        clocks=corr.clocks,
        warnings=tuple(dict.fromkeys(warnings)),
        points=corr.points,
        stitches=tuple(stitches),
        notes=tuple(dict.fromkeys(notes)),
    )


def _syn_or_first(conn: Connection) -> Journey:
    js = conn.journeys
    return _first(js, "forward", "syn") or _first(js, "forward", None) or js[0]


def _reply_of(conn: Connection) -> Journey | None:
    js = conn.journeys
    first = _syn_or_first(conn)
    after = js[js.index(first) + 1 :]
    return _first(after, "reverse", "syn-ack") or _first(after, "reverse", None)

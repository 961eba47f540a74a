"""One connection's path out and back, with clock-corrected hop times and latency.

`build_path` takes a `Correlation` and one of its connections and returns a `model.Path`: the
hops of the first request packet (the SYN, the query, the echo request) and of its first reply,
the translations between hops, and where the time went (connect, server, total, per segment
between consecutive points). Pure: no I/O; negative delays are kept, flagged and warned about.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence

from tracer.correlate.engine import Correlation, translation_kind
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
    Translation,
)

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
            )
        )
        prev = o
    return tuple(out)


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
        out.append(Segment(a, b, first_ns, median, len(samples), negative))
    return tuple(out)


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


def build_path(correlation: Correlation, connection: Connection) -> Path:
    """The path of the connection's first request packet and its first reply."""
    js = connection.journeys
    proto = connection.protocol
    first = _first(js, "forward", _REQUEST_KIND.get(proto)) or _first(js, "forward", None) or js[0]
    after = js[js.index(first) + 1 :]
    reply = _first(after, "reverse", _REPLY_KIND.get(proto)) or _first(after, "reverse", None)
    warnings: list[str] = list(correlation.warnings)
    if first.direction != "forward":
        warnings.append("no packet from the client was captured: showing a reply's path")
    if reply is None:
        warnings.append("no reply was captured for this request")
    points = {p.name: p for p in correlation.points}
    t0 = correlation.corrected(first.observations[0])
    forward = _hops(correlation, first, t0, points)
    reverse = _hops(correlation, reply, t0, points) if reply is not None else ()
    latency = _latency(correlation, connection, first, reply, warnings)
    backend = str(connection.backend) if connection.backend is not None else None
    request = Request(
        index=connection.index,
        protocol=proto,
        client=str(connection.client.src),
        destination=str(connection.client.dst),
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
    )

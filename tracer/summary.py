"""One-line protocol summaries of a request: "HTTP GET /hello -> 200", "DNS A web… -> 10.96.0.100".

`summarize` puts one line together from the leading payload bytes of the first request and reply
packets, decoded by `tracer.protocols` (HTTP/1, DNS over UDP or TCP, the TLS ClientHello's SNI,
ICMP type names); it never raises on hostile bytes: what it cannot read yields "". Scapy is not
used here: only a few hundred bytes of one packet each way are ever looked at.

`summarize_connection`, `summarize_all` and `summarize_frames` are the edge: they read those few
bytes from the capture files through `tracer.pcap.payload`. Nothing here decides what the request
is; the correlator does.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from tracer.model import Connection, Tuple5
from tracer.pcap.columns import Frames
from tracer.pcap.payload import MAX_BYTES, MappedFiles, PayloadReader
from tracer.protocols.dns import DNS_PORTS, DnsMessage, dns_message
from tracer.protocols.http import H2_PREFACE, http_request, http_request_head, http_status
from tracer.protocols.icmp import icmp_name
from tracer.protocols.tls import is_handshake, tls_reply, tls_sni


@dataclass(frozen=True)
class Exchange:
    """What a summary looks at: the leading payload bytes of the first packet each way.

    `response` is None when no reply was seen. `ports` are the destination ports the request had
    anywhere on its path (service port and target port), a hint for which decoder to try first.
    """

    protocol: str
    request: bytes = b""
    response: bytes | None = None
    ports: tuple[int, ...] = ()
    icmp_request: tuple[int, int] | None = None
    icmp_response: tuple[int, int] | None = None


def _dns_summary(query: DnsMessage, reply: DnsMessage | None) -> str:
    head = f"DNS {query.qtype_name} {query.qname}"
    if reply is None:
        return f"{head} -> no reply"
    if reply.rcode != 0:
        return f"{head} -> {reply.rcode_name}"
    addrs = [text for t, text in reply.answers if t == query.qtype]
    shown = addrs or [text for _, text in reply.answers]
    answer = ", ".join(shown[:4]) + (", …" if len(shown) > 4 else "") if shown else "no answer"
    return f"{head} -> {answer} ({reply.rcode_name})"


def summarize(ex: Exchange) -> str:
    """One line saying what the request was and how it was answered ("" when unknown)."""
    proto = ex.protocol.lower()
    if proto in ("icmp", "icmpv6"):
        if ex.icmp_request is None:
            return ""
        v6 = proto == "icmpv6"
        text = f"{proto.upper()} {icmp_name(*ex.icmp_request, v6=v6)}"
        if ex.icmp_response is not None:
            text += f" -> {icmp_name(*ex.icmp_response, v6=v6)}"
        return text
    if proto not in ("tcp", "udp") or not ex.request:
        return ""
    tcp = proto == "tcp"
    dns_first = bool(DNS_PORTS.intersection(ex.ports))
    if tcp:
        req = http_request(ex.request)
        if req is not None:
            text = f"HTTP {req.method} {req.target}"
            if req.host:
                text += f" (Host {req.host})"
            status = http_status(ex.response) if ex.response else None
            return f"{text} -> {status if status is not None else 'no response'}"
        if ex.request.startswith(H2_PREFACE):
            return "HTTP/2 (prior knowledge)"
        sni = tls_sni(ex.request)
        if sni is not None or is_handshake(ex.request):
            text = f"TLS ClientHello SNI {sni}" if sni else "TLS ClientHello"
            answer = tls_reply(ex.response) if ex.response else None
            return f"{text} -> {answer}" if answer else text
    if dns_first or not tcp:
        query = dns_message(ex.request, tcp=tcp)
        if query is not None and not query.response:
            reply = dns_message(ex.response, tcp=tcp) if ex.response else None
            if reply is not None and not (reply.response and reply.qname == query.qname):
                reply = None
            return _dns_summary(query, reply)
    return ""


def _first_payload_frame(frames: Frames, t: Tuple5) -> int | None:
    """The first frame at a point carrying payload on tuple `t` (used when no journey has one)."""
    try:
        a_src = frames.addresses.index(t.src.ip)
        a_dst = frames.addresses.index(t.dst.ip)
    except ValueError:
        return None
    c: Mapping[str, npt.NDArray[Any]] = frames.columns
    mask = (c["src"] == a_src) & (c["dst"] == a_dst) & (c["payload_len"] > 0)
    if t.src.port is not None:
        mask &= c["sport"] == t.src.port
    if t.dst.port is not None:
        mask &= c["dport"] == t.dst.port
    hits = np.flatnonzero(mask)
    return int(hits[0]) if hits.size else None


def _journey_payload(
    connection: Connection, frames: Mapping[str, Frames], direction: str, reader: PayloadReader
) -> tuple[bytes, tuple[int, int] | None] | None:
    """Payload bytes (and ICMP type/code) of the first journey in `direction` that carries any."""
    for journey in connection.journeys:
        if journey.direction != direction or journey.retransmission:
            continue
        icmp = journey.kind.startswith("icmp") or connection.protocol.startswith("icmp")
        if not icmp and not any(o.payload_len > 0 for o in journey.observations):
            continue
        best = b""
        icmp_tc: tuple[int, int] | None = None
        for obs in journey.observations:
            fr = frames.get(obs.point)
            if fr is None or not 0 <= obs.frame < len(fr):
                continue
            if icmp and icmp_tc is None:
                ty = int(fr.columns["icmp_type"][obs.frame])
                if ty >= 0:
                    icmp_tc = (ty, int(fr.columns["icmp_code"][obs.frame]))
            data = reader.read(fr, obs.frame)
            if len(data) > len(best):  # some points capture with a short snaplen
                best = data
        if best or icmp_tc is not None:
            return best, icmp_tc
    return None


def _ports(connection: Connection) -> tuple[int, ...]:
    ports = {t.dst.port for _, t in connection.tuples if t.dst.port is not None}
    if connection.client.dst.port is not None:
        ports.add(connection.client.dst.port)
    if connection.backend is not None and connection.backend.port is not None:
        ports.add(connection.backend.port)
    return tuple(sorted(ports))


def summarize_connection(
    connection: Connection, frames: Mapping[str, Frames], reader: PayloadReader | None = None
) -> str:
    """The summary of a connection's first request and reply, read from the capture files.

    Uses the connection's journeys (the first forward and reverse packets with payload); when the
    correlator kept none with payload, falls back to the first payload frame of the forward and
    reverse tuple at each point that saw the connection.
    """
    if reader is None:
        with PayloadReader() as own:
            return summarize_connection(connection, frames, own)
    fwd = _journey_payload(connection, frames, "forward", reader)
    rev = _journey_payload(connection, frames, "reverse", reader)
    proto = connection.protocol.lower()
    if fwd is None and proto in ("tcp", "udp"):
        for point, t in connection.tuples:
            fr = frames.get(point)
            if fr is None:
                continue
            i = _first_payload_frame(fr, t)
            if i is None:
                continue
            fwd = (reader.read(fr, i), None)
            j = _first_payload_frame(fr, t.reversed())
            if rev is None and j is not None:
                rev = (reader.read(fr, j), None)
            break
    if fwd is None:
        return ""
    return summarize(
        Exchange(
            protocol=proto,
            request=fwd[0],
            response=rev[0] if rev is not None else None,
            ports=_ports(connection),
            icmp_request=fwd[1],
            icmp_response=rev[1] if rev is not None else None,
        )
    )


def summarize_all(
    connections: Sequence[Connection], frames: Mapping[str, Frames]
) -> dict[int, str]:
    """Summaries by connection index, keeping any the correlator already wrote."""
    with PayloadReader() as reader:
        return {c.index: c.summary or summarize_connection(c, frames, reader) for c in connections}


def exchange_codes(ex: Exchange) -> tuple[int, int]:
    """(HTTP status, DNS rcode) of an exchange, -1 for each it does not have."""
    proto = ex.protocol.lower()
    if proto not in ("tcp", "udp") or not ex.request or not ex.response:
        return -1, -1
    tcp = proto == "tcp"
    if tcp and http_request_head(ex.request) is not None:
        status = http_status(ex.response)
        return (status if status is not None else -1), -1
    if not tcp or DNS_PORTS.intersection(ex.ports):
        query = dns_message(ex.request, tcp=tcp)
        reply = dns_message(ex.response, tcp=tcp)
        if query is not None and reply is not None and reply.response and not query.response:
            return -1, reply.rcode
    return -1, -1


@dataclass(frozen=True)
class Summaries:
    """Per connection of a listing: the one-line summary, HTTP status and DNS rcode (-1: none)."""

    text: list[str]
    status: npt.NDArray[np.int64]
    rcode: npt.NDArray[np.int64]


def summarize_frames(
    frames: Sequence[Frames],
    proto: Sequence[str],
    ports: Sequence[tuple[int, ...]],
    request: tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]],
    response: tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]],
) -> Summaries:
    """Summaries of many connections at once, from the (point, frame) of the first payload
    packet each way (-1 where none); `frames` are the points' frames, indexed by point.

    Reads the payload bytes straight from the mapped capture files; identical exchanges (the
    same request and reply bytes) are decoded once.
    """
    n = len(proto)
    text = [""] * n
    status = np.full(n, -1, dtype=np.int64)
    rcode = np.full(n, -1, dtype=np.int64)
    mapped = MappedFiles(frames)
    cache: dict[tuple[object, ...], tuple[str, int, int]] = {}

    def where(point: npt.NDArray[np.int64], frame: npt.NDArray[np.int64]) -> list[list[int]]:
        """Per connection: point (-1 none), payload offset and length, ICMP type and code;
        looked up for all connections at once, point by point."""
        out = np.full((5, n), -1, dtype=np.int64)
        for p, fr in enumerate(frames):
            rows = np.flatnonzero(point == p)
            f = frame[rows]
            ok = (f >= 0) & (f < len(fr)) & (mapped.maps[p] is not None)
            rows, f = rows[ok], f[ok]
            cols = fr.columns
            out[0, rows] = p
            out[1, rows] = np.asarray(cols["payload_off"])[f]
            out[2, rows] = np.minimum(np.asarray(cols["pcap_len"])[f], MAX_BYTES)
            out[3, rows] = np.asarray(cols["icmp_type"])[f]
            out[4, rows] = np.asarray(cols["icmp_code"])[f]
        return [row.tolist() for row in out]

    def read(p: int, off: int, ln: int, ty: int, code: int) -> tuple[bytes, tuple[int, int] | None]:
        icmp = (ty, code) if ty >= 0 else None
        if p < 0 or off < 0 or ln <= 0:
            return b"", icmp
        return mapped.maps[p][off : off + ln], icmp

    try:
        req_at = where(*request)
        resp_at = where(*response)
        for i in range(n):
            if req_at[0][i] < 0:
                continue
            req, req_icmp = read(*(c[i] for c in req_at))
            answered = resp_at[0][i] >= 0
            resp, resp_icmp = read(*(c[i] for c in resp_at)) if answered else (b"", None)
            key = (proto[i], ports[i], req, resp, req_icmp, resp_icmp, answered)
            hit = cache.get(key)
            if hit is None:
                ex = Exchange(
                    protocol=proto[i],
                    request=req,
                    response=resp if answered else None,
                    ports=ports[i],
                    icmp_request=req_icmp,
                    icmp_response=resp_icmp,
                )
                hit = (summarize(ex), *exchange_codes(ex))
                cache[key] = hit
            text[i], status[i], rcode[i] = hit
    finally:
        mapped.close()
    return Summaries(text, status, rcode)

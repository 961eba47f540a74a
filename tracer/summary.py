"""One-line protocol summaries of a request: "HTTP GET /hello -> 200", "DNS A web… -> 10.96.0.100".

The decoders are pure functions over the leading payload bytes of the first request and reply
packets (HTTP/1 request and status lines, DNS over UDP or TCP, the TLS ClientHello's SNI, ICMP
type names). They never raise on hostile bytes: anything they cannot read yields None or "".
Scapy is not used here: only a few hundred bytes of one packet each way are ever looked at.

`summarize_connection` is the one edge function: it reads those few bytes from the capture files
through the `payload_off`/`pcap_len` columns. Nothing here decides what the request is; the
correlator does.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, BinaryIO

import numpy as np
import numpy.typing as npt

from tracer.model import Connection, Tuple5
from tracer.pcap.columns import Frames

# How many payload bytes a summary may look at: enough for a request line, a Host header, a DNS
# message with a few answers and a ClientHello's extensions.
MAX_BYTES = 2048
_TARGET_MAX = 80  # longer HTTP targets are cut, the summary is one line

# --- HTTP/1 (RFC 9112) -------------------------------------------------------------------------

_REQUEST_LINE = re.compile(rb"([A-Z][A-Z-]{1,19}) ([\x21-\x7e]+) HTTP/(\d)\.(\d)\r?\n")
_STATUS_LINE = re.compile(rb"HTTP/(\d)(?:\.(\d))? (\d{3})(?: |\r?\n)")
_H2_PREFACE = b"PRI * HTTP/2.0\r\n"


@dataclass(frozen=True)
class HttpRequest:
    method: str
    target: str
    host: str | None


def _printable(raw: bytes, limit: int) -> str:
    text = raw.decode("ascii", "replace")
    text = "".join(c if c.isprintable() and c != "\ufffd" else "?" for c in text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def http_request_head(payload: bytes) -> tuple[str, bytes, dict[bytes, bytes]] | None:
    """The method, raw target and headers of an HTTP/1.x request, or None.

    Header names are lower-cased and each keeps its first value, stripped, as raw bytes.
    """
    m = _REQUEST_LINE.match(payload)
    if m is None:
        return None
    headers: dict[bytes, bytes] = {}
    head = payload[m.end() :].split(b"\r\n\r\n", 1)[0]
    for line in head.split(b"\n"):
        name, sep, value = line.partition(b":")
        if sep:
            headers.setdefault(name.strip().lower(), value.strip())
    return m.group(1).decode("ascii"), m.group(2), headers


def http_request(payload: bytes) -> HttpRequest | None:
    """The request line and Host header of an HTTP/1.x request, or None."""
    parsed = http_request_head(payload)
    if parsed is None:
        return None
    method, target, headers = parsed
    host = headers.get(b"host")
    shown_host = _printable(host, 100) or None if host is not None else None
    return HttpRequest(method, _printable(target, _TARGET_MAX), shown_host)


def http_status(payload: bytes) -> int | None:
    """The status code of an HTTP/1.x response, or None."""
    m = _STATUS_LINE.match(payload)
    return int(m.group(3)) if m else None


# --- DNS (RFC 1035, RFC 3596, RFC 7766 for TCP) ------------------------------------------------

DNS_TYPES = {
    1: "A",
    2: "NS",
    5: "CNAME",
    6: "SOA",
    12: "PTR",
    15: "MX",
    16: "TXT",
    28: "AAAA",
    33: "SRV",
    64: "SVCB",
    65: "HTTPS",
    255: "ANY",
}
DNS_RCODES = {
    0: "NOERROR",
    1: "FORMERR",
    2: "SERVFAIL",
    3: "NXDOMAIN",
    4: "NOTIMP",
    5: "REFUSED",
    6: "YXDOMAIN",
    7: "YXRRSET",
    8: "NXRRSET",
    9: "NOTAUTH",
    10: "NOTZONE",
}


@dataclass(frozen=True)
class DnsMessage:
    response: bool
    rcode: int
    qname: str
    qtype: int
    answers: tuple[tuple[int, str], ...]  # (type, rdata as text), in message order
    ident: int = 0  # the transaction ID that pairs a reply with its query (RFC 1035 §4.1.1)

    @property
    def qtype_name(self) -> str:
        return DNS_TYPES.get(self.qtype, f"TYPE{self.qtype}")

    @property
    def rcode_name(self) -> str:
        return DNS_RCODES.get(self.rcode, f"RCODE{self.rcode}")


class _ShortError(Exception):
    """The message ends (or points) outside its bytes."""


def _dns_name(msg: bytes, off: int) -> tuple[str, int]:
    """Decode a possibly compressed name at `off`; return it and the offset just past it."""
    labels: list[str] = []
    end = -1
    jumps = 0
    total = 0
    while True:
        if off >= len(msg):
            raise _ShortError
        n = msg[off]
        if n & 0xC0 == 0xC0:
            if off + 1 >= len(msg):
                raise _ShortError
            if end < 0:
                end = off + 2
            jumps += 1
            if jumps > 32:  # a pointer loop
                raise _ShortError
            off = ((n & 0x3F) << 8) | msg[off + 1]
            continue
        if n & 0xC0:
            raise _ShortError  # 0x40/0x80 label types are obsolete
        off += 1
        if n == 0:
            break
        if off + n > len(msg):
            raise _ShortError
        total += n + 1
        if total > 255:
            raise _ShortError
        labels.append(_printable(msg[off : off + n], 63))
        off += n
    return ".".join(labels) or ".", (end if end >= 0 else off)


def dns_message(payload: bytes, *, tcp: bool = False) -> DnsMessage | None:
    """The question, answers and rcode of a standard query/response, or None.

    Over TCP the message follows a two-byte length (RFC 7766); a capture may cut it short, so
    answers that do not fit are dropped rather than making the whole message unreadable.
    """
    msg = payload
    if tcp:
        if len(msg) < 2:
            return None
        length = int.from_bytes(msg[:2], "big")
        msg = msg[2 : 2 + length]
    if len(msg) < 12:
        return None
    flags = int.from_bytes(msg[2:4], "big")
    qdcount = int.from_bytes(msg[4:6], "big")
    ancount = int.from_bytes(msg[6:8], "big")
    if (flags >> 11) & 0xF != 0 or qdcount != 1:  # only a standard query with one question
        return None
    try:
        qname, off = _dns_name(msg, 12)
        if off + 4 > len(msg):
            return None
        qtype = int.from_bytes(msg[off : off + 2], "big")
        off += 4
    except _ShortError:
        return None
    answers: list[tuple[int, str]] = []
    try:
        for _ in range(min(ancount, 64)):
            _, off = _dns_name(msg, off)
            if off + 10 > len(msg):
                break
            rtype = int.from_bytes(msg[off : off + 2], "big")
            rdlen = int.from_bytes(msg[off + 8 : off + 10], "big")
            off += 10
            if off + rdlen > len(msg):
                break
            rdata = msg[off : off + rdlen]
            if rtype == 1 and rdlen == 4:
                answers.append((rtype, str(ipaddress.IPv4Address(rdata))))
            elif rtype == 28 and rdlen == 16:
                answers.append((rtype, str(ipaddress.IPv6Address(rdata))))
            elif rtype in (2, 5, 12):
                answers.append((rtype, _dns_name(msg, off)[0]))
            else:
                answers.append((rtype, DNS_TYPES.get(rtype, f"TYPE{rtype}")))
            off += rdlen
    except _ShortError:
        pass
    ident = int.from_bytes(msg[0:2], "big")
    return DnsMessage(bool(flags >> 15), flags & 0xF, qname, qtype, tuple(answers), ident)


# --- TLS (RFC 8446 §4.1.2, RFC 6066 §3) ---------------------------------------------------------


def tls_sni(payload: bytes) -> str | None:
    """The server_name of a TLS ClientHello in the first record, or None."""
    b = payload
    # record: type 22 (handshake), legacy version 3.x; handshake: type 1 (client_hello)
    if len(b) < 9 or b[0] != 0x16 or b[1] != 3 or b[5] != 1:
        return None
    off = 9 + 2 + 32  # handshake header, legacy_version, random
    try:
        off += 1 + b[off]  # legacy_session_id
        off += 2 + int.from_bytes(b[off : off + 2], "big")  # cipher_suites
        off += 1 + b[off]  # legacy_compression_methods
        ext_end = off + 2 + int.from_bytes(b[off : off + 2], "big")
        off += 2
        while off + 4 <= min(ext_end, len(b)):
            etype = int.from_bytes(b[off : off + 2], "big")
            elen = int.from_bytes(b[off + 2 : off + 4], "big")
            off += 4
            if etype == 0:  # server_name: list length, name_type 0 (host_name), length, name
                if off + 5 > len(b) or b[off + 2] != 0:
                    return None
                nlen = int.from_bytes(b[off + 3 : off + 5], "big")
                name = b[off + 5 : off + 5 + nlen]
                if len(name) != nlen or not nlen:
                    return None
                return _printable(name, 255)
            off += elen
    except IndexError:
        return None
    return None


def _tls_reply(payload: bytes) -> str | None:
    if len(payload) >= 6 and payload[0] == 0x16 and payload[1] == 3 and payload[5] == 2:
        return "ServerHello"
    if len(payload) >= 5 and payload[0] == 0x15 and payload[1] == 3:
        return "alert"
    return None


# --- ICMP (RFC 792, RFC 4443) -------------------------------------------------------------------

ICMP_TYPES = {
    0: "echo-reply",
    3: "destination-unreachable",
    4: "source-quench",
    5: "redirect",
    8: "echo-request",
    11: "time-exceeded",
    12: "parameter-problem",
    13: "timestamp",
    14: "timestamp-reply",
}
ICMP_UNREACH_CODES = {
    0: "net-unreachable",
    1: "host-unreachable",
    2: "protocol-unreachable",
    3: "port-unreachable",
    4: "fragmentation-needed",
    9: "net-prohibited",
    10: "host-prohibited",
    13: "admin-prohibited",
}
ICMPV6_TYPES = {
    1: "destination-unreachable",
    2: "packet-too-big",
    3: "time-exceeded",
    4: "parameter-problem",
    128: "echo-request",
    129: "echo-reply",
    133: "router-solicitation",
    134: "router-advertisement",
    135: "neighbor-solicitation",
    136: "neighbor-advertisement",
}
ICMPV6_UNREACH_CODES = {
    0: "no-route",
    1: "admin-prohibited",
    3: "address-unreachable",
    4: "port-unreachable",
}


def icmp_name(icmp_type: int, code: int = 0, *, v6: bool = False) -> str:
    """The name of an ICMP (or ICMPv6) type, with the code where it says something."""
    names = ICMPV6_TYPES if v6 else ICMP_TYPES
    name = names.get(icmp_type, f"type-{icmp_type}")
    if icmp_type == (1 if v6 else 3):
        codes = ICMPV6_UNREACH_CODES if v6 else ICMP_UNREACH_CODES
        name += "/" + codes.get(code, f"code-{code}")
    return name


# --- putting it together ------------------------------------------------------------------------

DNS_PORTS = frozenset({53, 5353})


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
        if ex.request.startswith(_H2_PREFACE):
            return "HTTP/2 (prior knowledge)"
        sni = tls_sni(ex.request)
        if sni is not None or (ex.request[:1] == b"\x16" and ex.request[1:2] == b"\x03"):
            text = f"TLS ClientHello SNI {sni}" if sni else "TLS ClientHello"
            tls_reply = _tls_reply(ex.response) if ex.response else None
            return f"{text} -> {tls_reply}" if tls_reply else text
    if dns_first or not tcp:
        query = dns_message(ex.request, tcp=tcp)
        if query is not None and not query.response:
            reply = dns_message(ex.response, tcp=tcp) if ex.response else None
            if reply is not None and not (reply.response and reply.qname == query.qname):
                reply = None
            return _dns_summary(query, reply)
    return ""


# --- the edge: read those bytes from the capture files -------------------------------------------


class PayloadReader:
    """Reads payload bytes by frame, keeping each capture file open until `close` (a --list of
    thousands of connections would otherwise open the same files thousands of times)."""

    def __init__(self, limit: int = MAX_BYTES) -> None:
        self.limit = limit
        self._files: dict[str, BinaryIO | None] = {}

    def __enter__(self) -> PayloadReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for f in self._files.values():
            if f is not None:
                f.close()
        self._files.clear()

    def read(self, frames: Frames, frame: int) -> bytes:
        """The captured L4 payload of one frame; b"" when absent or unreadable."""
        if not 0 <= frame < len(frames):
            return b""
        off = int(frames.columns["payload_off"][frame])
        n = min(int(frames.columns["pcap_len"][frame]), self.limit)
        if off < 0 or n <= 0:
            return b""
        if frames.path not in self._files:
            try:
                self._files[frames.path] = open(frames.path, "rb")
            except OSError:
                # A summary is a courtesy: a file gone since it was read must not fail the report.
                self._files[frames.path] = None
        f = self._files[frames.path]
        if f is None:
            return b""
        try:
            f.seek(off)
            return f.read(n)
        except OSError:
            return b""


def read_payload(frames: Frames, frame: int, limit: int = MAX_BYTES) -> bytes:
    """The captured L4 payload of one frame (at most `limit` bytes); b"" when absent or unreadable."""
    with PayloadReader(limit) as reader:
        return reader.read(frames, frame)


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


class _Mapped:
    """The capture files mapped read-only, one per point (None where a file cannot be read)."""

    def __init__(self, frames: Sequence[Frames]) -> None:
        import mmap

        self.maps: list[Any] = []
        self._files: list[BinaryIO] = []
        for fr in frames:
            try:
                f = open(fr.path, "rb")
                self._files.append(f)
                self.maps.append(mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ))
            except (OSError, ValueError):
                # A summary is a courtesy: a file gone since it was read must not fail a listing.
                self.maps.append(None)

    def close(self) -> None:
        for m in self.maps:
            if m is not None:
                m.close()
        for f in self._files:
            f.close()


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
    mapped = _Mapped(frames)
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

"""Watch one point's packets live for the `--until` condition. Pure: packets in, a trigger out.

`Watcher.feed` takes each frame as the point's stream delivers it and gathers, per connection, the
packets the outcome rules read; `Watcher.tick` asks those rules (tracer.correlate.outcome, the
same definition as `analyze --list --failed`) how every live connection stands at that moment.
The first connection that meets the condition becomes the `Trigger`. Only the packets that can
change a connection's facts are kept (its first packet each way, SYNs, FINs, RSTs), and a
connection is forgotten once its outcome is final: memory follows the live connections, not the
traffic. It reads no file and starts nothing.
"""

from __future__ import annotations

import ipaddress
import re
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tracer.correlate import outcome as oc
from tracer.pcap.decode import (
    ICMP_ERROR_TYPES,
    IPPROTO_ICMP,
    IPPROTO_ICMPV6,
    IPPROTO_TCP,
    IPPROTO_UDP,
    Buffer,
    decode_frame,
)

# TCP flags (RFC 9293).
FIN, SYN, RST, ACK = 0x01, 0x02, 0x04, 0x10
DNS_PORT = 53
DNS_RCODES = {1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED"}
# `failed` without a duration: a SYN gets its first retransmission after 1 s and curl's usual
# connect timeouts are a few seconds; 3 s without any answer is a failure, not a slow path.
DEFAULT_UNANSWERED_NS = 3_000_000_000
# Connections followed at once; the oldest are forgotten first (bounded memory whatever the load).
MAX_CONNECTIONS = 50_000
# Between two looks at every live connection (a RST or an ICMP error is judged at once).
JUDGE_EVERY_NS = 100_000_000
CONDITIONS = ("reset", "rejected", "unanswered", "slower", "http5xx", "dns-error", "failed")

_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|m)?\s*$")


def parse_duration(text: str) -> int:
    """`500ms`, `2s`, `1.5` (seconds), `1m` -> nanoseconds."""
    m = _DURATION.match(text)
    if not m:
        raise ValueError(f"{text!r} is not a duration (e.g. 500ms, 2s, 1m)")
    scale = {"ms": 1e6, "s": 1e9, "m": 60e9, None: 1e9}[m.group(2)]
    ns = int(float(m.group(1)) * scale)
    if ns <= 0:
        raise ValueError(f"{text!r}: the duration must be more than 0")
    return ns


@dataclass(frozen=True)
class Until:
    """What `--until` waits for; durations in ns, None where that condition is not asked."""

    text: str
    reset: bool = False
    rejected: bool = False
    unanswered_ns: int | None = None
    slower_ns: int | None = None
    http5xx: bool = False
    dns_error: bool = False

    def describe(self) -> str:
        parts = []
        if self.reset:
            parts.append("a reset")
        if self.rejected:
            parts.append("an ICMP rejection")
        if self.unanswered_ns is not None:
            parts.append(f"no answer in {_fmt_ns(self.unanswered_ns)}")
        if self.slower_ns is not None:
            parts.append(f"a response later than {_fmt_ns(self.slower_ns)}")
        if self.http5xx:
            parts.append("an HTTP 5xx")
        if self.dns_error:
            parts.append("a DNS error answer (NXDOMAIN, SERVFAIL, ...)")
        return " or ".join(parts)


def parse_until(text: str) -> Until:
    """`failed`, `reset,slower:2s`, `unanswered:5s,http5xx`, ... (see CONDITIONS)."""
    terms = [t.strip() for t in text.split(",")]
    if not text.strip() or any(not t for t in terms):
        raise ValueError(f"--until {text!r}: empty condition (expected {', '.join(CONDITIONS)})")
    kw: dict[str, Any] = {}
    for term in terms:
        name, colon, arg = term.partition(":")
        name = name.strip().lower()
        if name not in CONDITIONS:
            raise ValueError(
                f"--until {text!r}: unknown condition {name!r} (expected {', '.join(CONDITIONS)})"
            )
        needs_arg = name in ("unanswered", "slower")
        if colon and not needs_arg:
            raise ValueError(f"--until {text!r}: {name} takes no argument")
        if name == "slower" and not colon:
            raise ValueError(f"--until {text!r}: slower needs a duration, e.g. slower:2s")
        try:
            ns = parse_duration(arg) if colon else DEFAULT_UNANSWERED_NS
        except ValueError as e:
            raise ValueError(f"--until {text!r}: {name}: {e}") from None
        if name in ("reset", "failed"):
            kw["reset"] = True
        if name in ("rejected", "failed"):
            kw["rejected"] = True
        if name == "failed":
            kw.setdefault("unanswered_ns", DEFAULT_UNANSWERED_NS)
        elif name == "unanswered":
            kw["unanswered_ns"] = ns
        elif name == "slower":
            kw["slower_ns"] = ns
        elif name == "http5xx":
            kw["http5xx"] = True
        elif name == "dns-error":
            kw["dns_error"] = True
    return Until(text=text.strip(), **kw)


@dataclass(frozen=True)
class Trigger:
    """The connection that met the condition, and the packet that made it so."""

    condition: str  # reset | rejected | unanswered | slower | http5xx | dns-error
    outcome: str  # the connection's outcome under the shared rules (ok for slow/5xx/DNS errors)
    at_ns: int  # when the condition became true (capture clock)
    packet_ns: int  # timestamp of the packet that fired it
    packet: str  # that packet in one line
    proto: str
    client: str  # ip:port as the watched point saw it
    server: str
    started_ns: int  # the connection's first packet
    detail: str

    def match(self) -> str:
        """The connection as an `analyze --match` spec."""
        return f"src={self.client},dst={self.server},proto={self.proto}"

    def to_json(self) -> dict[str, Any]:
        return {
            "condition": self.condition,
            "outcome": self.outcome,
            "time_ns": self.at_ns,
            "packet_ns": self.packet_ns,
            "packet": self.packet,
            "connection": {
                "proto": self.proto,
                "client": self.client,
                "server": self.server,
                "started_ns": self.started_ns,
            },
            "detail": self.detail,
            "match": self.match(),
        }


@dataclass
class _Conn:
    key: tuple[Any, ...]
    proto: int
    client: tuple[str, int]
    server: tuple[str, int]
    first_ns: int
    first: str  # the first packet, in one line
    # The packets the outcome rules read: (forward, TCP flags, time); ICMP errors' times.
    rows: list[tuple[bool, int, int]] = field(default_factory=list)
    errors: list[int] = field(default_factory=list)
    seen_forward: bool = False
    seen_reply: bool = False  # a packet from the server side other than a RST
    last: dict[int, str] = field(default_factory=dict)  # outcome code -> the packet behind it
    request_ns: int | None = None  # the request in flight (client payload not yet answered)


def _addr(raw: bytes) -> str:
    return str(ipaddress.ip_address(raw))


def _ep(ip: str, port: int) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def _fmt_ns(ns: int) -> str:
    return f"{ns / 1e6:.0f} ms" if ns < 1_000_000_000 else f"{ns / 1e9:g} s"


_FLAG_LETTERS = ((SYN, "S"), (FIN, "F"), (RST, "R"), (0x08, "P"), (ACK, "."))


def _flags(f: int) -> str:
    return "".join(c for bit, c in _FLAG_LETTERS if f & bit)


class Watcher:
    """Follows the connections of one point's stream; `fired` holds the first trigger."""

    def __init__(self, until: Until, linktype: int | None = None) -> None:
        self.until = until
        self.linktype = linktype
        self.fired: Trigger | None = None
        self.connections = 0  # connections seen starting
        self.packets = 0
        self.last_ns = 0
        # Live connections, oldest first; requests waiting for their response, oldest first.
        self._conns: OrderedDict[tuple[Any, ...], _Conn] = OrderedDict()
        self._await_response: OrderedDict[tuple[Any, ...], _Conn] = OrderedDict()
        # (proto, client port, server port) -> key: ICMP errors quote ports, not always addresses.
        self._by_ports: dict[tuple[int, int, int], tuple[Any, ...]] = {}
        self._wanted = {
            code
            for code, asked in (
                (oc.RESET, until.reset),
                (oc.REJECTED, until.rejected),
                (oc.UNANSWERED, until.unanswered_ns is not None),
            )
            if asked
        }
        self._patience = until.unanswered_ns or oc.DEFAULT_PATIENCE_NS
        self._judged_ns = 0

    # -- input ---------------------------------------------------------------------------------

    def feed(self, ts_ns: int, buf: Buffer, start: int, caplen: int) -> Trigger | None:
        """One frame of the stream (the record's data at buf[start:start+caplen])."""
        if self.fired is not None or self.linktype is None:
            return self.fired
        row = decode_frame(buf, start, caplen, self.linktype)
        self.packets += 1
        self.last_ns = max(self.last_ns, ts_ns)
        decisive = False
        if row.proto in (IPPROTO_ICMP, IPPROTO_ICMPV6):
            if row.icmp_type in ICMP_ERROR_TYPES[row.proto]:
                decisive = self._icmp_error(ts_ns, row)
        elif row.proto in (IPPROTO_TCP, IPPROTO_UDP) and row.sport >= 0 and row.dport >= 0:
            decisive = self._l4(ts_ns, row, buf)
        if self.fired is None and decisive:
            # A RST or an ICMP error may decide a connection now: ask at once, not at the tick.
            self.tick(ts_ns)
        return self.fired

    def tick(self, now_ns: int, *, force: bool = True) -> Trigger | None:
        """Ask the outcome rules about every live connection at `now_ns` (capture clock).

        Without `force`, the rules are asked at most every JUDGE_EVERY_NS of capture time.
        """
        if self.fired is not None:
            return self.fired
        if self._wanted and self._conns and (force or now_ns - self._judged_ns >= JUDGE_EVERY_NS):
            self._judged_ns = now_ns
            self._judge(now_ns)
        if self.fired is None and self.until.slower_ns is not None:
            self._late_responses(now_ns)
        return self.fired

    @property
    def open_connections(self) -> int:
        return len(self._conns)

    # -- the outcome rules ---------------------------------------------------------------------

    @staticmethod
    def _facts(conns: list[_Conn]) -> oc.Facts:
        sizes = np.fromiter((len(c.rows) for c in conns), dtype=np.int64, count=len(conns))
        rows = [r for c in conns for r in c.rows]
        return oc.packet_facts(
            len(conns),
            np.repeat(np.arange(len(conns), dtype=np.int64), sizes),
            np.fromiter((r[0] for r in rows), dtype=bool, count=len(rows)),
            np.repeat(np.fromiter((c.proto for c in conns), np.int64, len(conns)), sizes),
            np.fromiter((r[1] for r in rows), dtype=np.int64, count=len(rows)),
            np.fromiter((r[2] for r in rows), dtype=np.int64, count=len(rows)),
            error_conn=np.asarray([i for i, c in enumerate(conns) for _ in c.errors], np.int64),
            error_ns=np.asarray([t for c in conns for t in c.errors], dtype=np.int64),
        )

    def _judge(self, now_ns: int) -> None:
        conns = list(self._conns.values())
        facts = self._facts(conns)
        codes = oc.classify(facts, now_ns, patience_ns=self._patience)
        hits = [i for i in range(len(conns)) if int(codes[i]) in self._wanted]
        if hits:
            when = {
                oc.RESET: facts.rst_ns,
                oc.REJECTED: facts.icmp_ns,
                oc.UNANSWERED: facts.first_ns + self._patience,
            }
            i = min(hits, key=lambda j: int(when[int(codes[j])][j]))
            self._fire_outcome(conns[i], int(codes[i]), int(when[int(codes[i])][i]), facts, i)
            return
        # `ok` and `reset` never change with later packets (tracer.correlate.outcome): forget
        # those connections. `rejected` and `unanswered` can still become `ok`, or a reset.
        for c, code in zip(conns, codes, strict=True):
            if int(code) in (oc.OK, oc.RESET):
                self._forget(c)

    def _fire_outcome(self, conn: _Conn, code: int, at: int, facts: oc.Facts, i: int) -> None:
        name = oc.OUTCOMES[code]
        since = f", {_fmt_ns(at - int(facts.first_ns[i]))} after the first packet"
        if code == oc.RESET:
            self._fire(
                conn, name, at, at, conn.last.get(code, ""), f"RST from {_ep(*conn.server)}{since}"
            )
        elif code == oc.REJECTED:
            line = conn.last.get(code, "")
            self._fire(conn, name, at, at, line, f"ICMP error {line.split(' ICMP ', 1)[-1]}{since}")
        else:
            what = "SYN" if conn.proto == IPPROTO_TCP else "first datagram"
            self._fire(
                conn,
                name,
                at,
                conn.first_ns,
                conn.first,
                f"the {what} got no answer in {_fmt_ns(self._patience)}",
            )

    def _late_responses(self, now_ns: int) -> None:
        assert self.until.slower_ns is not None
        while self._await_response:
            conn = next(iter(self._await_response.values()))
            assert conn.request_ns is not None
            waited = np.array([now_ns - conn.request_ns], dtype=np.int64)
            if not oc.slower(waited, self.until.slower_ns)[0]:
                return  # oldest first: the others have waited less
            self._fire(
                conn,
                "slower",
                conn.request_ns + self.until.slower_ns,
                conn.request_ns,
                conn.first,
                f"no response {_fmt_ns(self.until.slower_ns)} after the request",
            )
            return

    # -- the facts, as packets pass ------------------------------------------------------------

    def _l4(self, ts: int, row: Any, buf: Buffer) -> bool:
        src, dst = (_addr(row.src), row.sport), (_addr(row.dst), row.dport)
        key = (row.proto, *sorted((src, dst)))
        conn = self._conns.get(key)
        tcp = row.proto == IPPROTO_TCP
        flags = row.tcp_flags if tcp else 0
        line = self._line(row, src, dst)
        opening = tcp and flags & (SYN | ACK) == SYN
        if conn is None or (opening and conn.seen_reply and src == conn.client):
            # A new connection, or its port pair reused by a new SYN. The client sent the SYN
            # (or received the SYN-ACK); seen from the middle, it holds the ephemeral (higher)
            # port; a UDP datagram's sender is the client unless it comes from a well-known port.
            if opening:
                client_side = True
            elif tcp:
                client_side = not flags & SYN and src[1] > dst[1]
            else:
                client_side = not (src[1] < 1024 <= dst[1])
            client, server = (src, dst) if client_side else (dst, src)
            conn = self._open(key, row.proto, client, server, ts, line)
        forward = src == conn.client
        # Only packets that can change a connection's facts are kept (the rules take the
        # first time of each kind): its first packet each way, SYNs, FINs and RSTs.
        keep = bool(flags & (SYN | FIN | RST))
        if forward and not conn.seen_forward:
            conn.seen_forward = keep = True
        if not forward and not flags & RST and not conn.seen_reply:
            conn.seen_reply = keep = True
        if keep:
            conn.rows.append((forward, flags, ts))
        if not forward and flags & RST:
            conn.last.setdefault(oc.RESET, line)
        payload = self._payload(row, buf)
        if not forward and payload:
            if conn.request_ns is not None:
                waited = ts - conn.request_ns
                conn.request_ns = None
                self._await_response.pop(key, None)
                limit = self.until.slower_ns
                if limit is not None and oc.slower(np.array([waited]), limit)[0]:
                    self._fire(
                        conn,
                        "slower",
                        ts,
                        ts,
                        line,
                        f"the response started {_fmt_ns(waited)} after the request",
                    )
                    return False
            self._answer_content(conn, ts, line, payload)
        elif forward and payload and conn.request_ns is None:
            conn.request_ns = ts
            if self.until.slower_ns is not None:
                self._await_response[key] = conn
        if forward and flags & (FIN | RST) and conn.request_ns is not None:
            # The client gave up on its request (curl's timeout): no response can come now.
            conn.request_ns = None
            self._await_response.pop(key, None)
        return bool(flags & RST)

    def _open(
        self, key: tuple[Any, ...], proto: int, client: Any, server: Any, ts: int, line: str
    ) -> _Conn:
        old = self._conns.get(key)
        if old is not None:
            self._forget(old)
        conn = _Conn(key, proto, client, server, ts, line)
        self._conns[key] = conn
        self._by_ports[(proto, client[1], server[1])] = key
        self.connections += 1
        while len(self._conns) > MAX_CONNECTIONS:
            self._forget(next(iter(self._conns.values())))
        return conn

    def _forget(self, conn: _Conn) -> None:
        self._conns.pop(conn.key, None)
        self._await_response.pop(conn.key, None)
        ports = (conn.proto, conn.client[1], conn.server[1])
        if self._by_ports.get(ports) == conn.key:
            del self._by_ports[ports]

    def _answer_content(self, conn: _Conn, ts: int, line: str, payload: bytes) -> None:
        u = self.until
        if u.http5xx and payload.startswith(b"HTTP/") and len(payload) >= 12:
            code = payload[9:12]
            if code.isdigit() and oc.http_error(np.array([int(code)]))[0]:
                status = payload[9:].split(b"\r\n", 1)[0].decode("ascii", "replace")
                self._fire(
                    conn, "http5xx", ts, ts, line, f"{_ep(*conn.server)} answered HTTP {status}"
                )
                return
        if u.dns_error and conn.server[1] == DNS_PORT:
            msg = payload[2:] if conn.proto == IPPROTO_TCP else payload
            if len(msg) >= 4 and msg[2] & 0x80:  # QR: a response
                rcode = msg[3] & 0x0F
                if oc.dns_error(np.array([rcode]))[0]:
                    name = DNS_RCODES.get(rcode, f"rcode {rcode}")
                    self._fire(conn, "dns-error", ts, ts, line, f"DNS answer {name}")

    def _icmp_error(self, ts: int, row: Any) -> bool:
        key = self._by_ports.get((row.quoted_proto, row.quoted_sport, row.quoted_dport))
        conn = self._conns.get(key) if key is not None else None
        if conn is None:
            return False
        conn.errors.append(ts)
        conn.last.setdefault(
            oc.REJECTED,
            f"{_addr(row.src)} > {_addr(row.dst)} ICMP type {row.icmp_type} code {row.icmp_code}",
        )
        return True

    # -- helpers -------------------------------------------------------------------------------

    def _fire(
        self, conn: _Conn, condition: str, at: int, pkt_ns: int, line: str, detail: str
    ) -> Trigger:
        # The connection's outcome under the rules at that moment (a slow connection, or one
        # answered with an error, may well be `ok` or still `incomplete`).
        if condition in oc.OUTCOMES:
            outcome = condition
        else:
            code = oc.classify(self._facts([conn]), at, patience_ns=self._patience)[0]
            outcome = oc.OUTCOMES[int(code)]
        self.fired = Trigger(
            condition=condition,
            outcome=outcome,
            at_ns=at,
            packet_ns=pkt_ns,
            packet=line,
            proto="tcp" if conn.proto == IPPROTO_TCP else "udp",
            client=_ep(*conn.client),
            server=_ep(*conn.server),
            started_ns=conn.first_ns,
            detail=detail,
        )
        return self.fired

    @staticmethod
    def _payload(row: Any, buf: Buffer) -> bytes:
        if row.payload_len <= 0 or row.payload_off < 0:
            return b""
        return bytes(buf[row.payload_off : row.payload_off + min(row.payload_len, 64)])

    @staticmethod
    def _line(row: Any, src: tuple[str, int], dst: tuple[str, int]) -> str:
        if row.proto == IPPROTO_TCP:
            return f"{_ep(*src)} > {_ep(*dst)} TCP [{_flags(row.tcp_flags)}] len {row.payload_len}"
        return f"{_ep(*src)} > {_ep(*dst)} UDP len {row.payload_len}"

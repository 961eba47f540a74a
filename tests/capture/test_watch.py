"""The live watcher: crafted packets in, the trigger (or none) out, by the shared outcome rules."""

from __future__ import annotations

import struct

import pytest

from tests.pcap.craft import eth, ipv4, tcp, udp
from tracer.capture.watch import Trigger, Until, Watcher, parse_duration, parse_until

CLIENT, VIP, POD = "10.244.1.2", "10.96.0.100", "10.244.1.3"
T0 = 1_700_000_000_000_000_000
MS = 1_000_000
S, A, F, R, P = 0x02, 0x10, 0x01, 0x04, 0x08


def seg(src: str, dst: str, sport: int, dport: int, flags: int, payload: bytes = b"") -> bytes:
    return eth(ipv4(tcp(payload, sport, dport, flags=flags), 6, src, dst))


def out(flags: int, payload: bytes = b"", port: int = 40000) -> bytes:
    return seg(CLIENT, VIP, port, 80, flags, payload)


def back(flags: int, payload: bytes = b"", port: int = 40000) -> bytes:
    return seg(VIP, CLIENT, 80, port, flags, payload)


def icmp_unreachable(quoted: bytes, code: int = 3, src: str = "10.244.1.1") -> bytes:
    body = struct.pack(">BBHI", 3, code, 0, 0) + quoted
    return eth(ipv4(body, 1, src, CLIENT))


def run(until: str, frames: list[tuple[int, bytes]], now_ms: int | None = None) -> Trigger | None:
    w = Watcher(parse_until(until), linktype=1)
    for t_ms, frame in frames:
        if w.feed(T0 + t_ms * MS, frame, 0, len(frame)) is not None:
            return w.fired
    if now_ms is not None:
        return w.tick(T0 + now_ms * MS)
    return None


GET = b"GET / HTTP/1.1\r\nHost: web\r\n\r\n"
OK_200 = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
HEALTHY = [
    (0, out(S)),
    (1, back(S | A)),
    (2, out(A)),
    (3, out(P | A, GET)),
    (5, back(P | A, OK_200)),
    (6, out(F | A)),
    (7, back(F | A)),
    (8, out(A)),
]


def test_parse_until() -> None:
    u = parse_until("failed")
    assert (u.reset, u.rejected, u.unanswered_ns) == (True, True, 3_000_000_000)
    u = parse_until("reset, slower:250ms,unanswered:5s,http5xx,dns-error")
    assert u == Until(
        text="reset, slower:250ms,unanswered:5s,http5xx,dns-error",
        reset=True,
        slower_ns=250 * MS,
        unanswered_ns=5_000_000_000,
        http5xx=True,
        dns_error=True,
    )
    assert parse_duration("1m") == 60_000_000_000 and parse_duration("1.5") == 1_500_000_000
    for bad, says in (
        ("", "empty"),
        ("reset,,", "empty"),
        ("boom", "unknown condition 'boom'"),
        ("slower", "slower needs a duration"),
        ("reset:2s", "reset takes no argument"),
        ("unanswered:soon", "not a duration"),
        ("slower:0s", "more than 0"),
    ):
        with pytest.raises(ValueError, match=says):
            parse_until(bad)


def test_healthy_traffic_never_fires() -> None:
    assert run("failed,slower:1s,http5xx", HEALTHY, now_ms=60_000) is None


def test_reset_fires_on_the_servers_rst() -> None:
    t = run("failed", [*HEALTHY[:4], (6, back(R | A))])
    assert t is not None
    assert (t.condition, t.outcome) == ("reset", "reset")
    assert (t.client, t.server, t.proto) == (f"{CLIENT}:40000", f"{VIP}:80", "tcp")
    assert t.at_ns == T0 + 6 * MS and t.started_ns == T0
    assert "[R.]" in t.packet and f"RST from {VIP}:80" in t.detail
    assert t.match() == f"src={CLIENT}:40000,dst={VIP}:80,proto=tcp"


def test_client_rst_and_late_echo_are_not_resets() -> None:
    # The client aborting its own connection, and a RST after both FINs, are not failures.
    assert run("reset", [*HEALTHY[:5], (6, out(R | A))], now_ms=10_000) is None
    assert run("reset", [*HEALTHY, (9, back(R))], now_ms=10_000) is None


def test_unanswered_waits_for_its_duration() -> None:
    frames = [(0, out(S)), (1000, out(S))]
    assert run("unanswered:3s", frames, now_ms=2_999) is None
    t = run("unanswered:3s", frames, now_ms=3_000)
    assert t is not None and (t.condition, t.outcome) == ("unanswered", "unanswered")
    assert t.at_ns == T0 + 3_000 * MS and t.packet_ns == T0 and "[S]" in t.packet


def test_rejected_by_an_icmp_error_quoting_the_syn() -> None:
    syn = out(S)
    t = run("failed", [(0, syn), (1, icmp_unreachable(syn[14:42]))])
    assert t is not None and (t.condition, t.outcome) == ("rejected", "rejected")
    assert "type 3 code 3" in t.detail and t.client == f"{CLIENT}:40000"


def test_slower_fires_at_the_late_response_or_when_none_came() -> None:
    late = [(0, out(S)), (1, back(S | A)), (2, out(P | A, GET)), (2_502, back(P | A, OK_200))]
    t = run("slower:2s", late)
    assert t is not None and t.condition == "slower" and t.at_ns == T0 + 2_502 * MS
    assert "2.5 s after the request" in t.detail
    assert run("slower:3s", late, now_ms=10_000) is None
    t = run("slower:2s", late[:3], now_ms=2_003)
    assert t is not None and t.at_ns == T0 + 2_002 * MS and "no response" in t.detail


def test_http5xx_and_dns_errors() -> None:
    err = b"HTTP/1.1 503 Service Unavailable\r\n\r\n"
    t = run("http5xx", [*HEALTHY[:4], (5, back(P | A, err))])
    assert t is not None and t.condition == "http5xx" and "503 Service Unavailable" in t.detail
    query = struct.pack(">HHHHHH", 7, 0x0100, 1, 0, 0, 0) + b"\x03wbe\x00\x00\x01\x00\x01"
    answer = struct.pack(">HHHHHH", 7, 0x8183, 1, 0, 0, 0) + query[12:]
    frames = [
        (0, eth(ipv4(udp(query, 41000, 53), 17, CLIENT, "10.96.0.10"))),
        (1, eth(ipv4(udp(answer, 53, 41000), 17, "10.96.0.10", CLIENT))),
    ]
    t = run("dns-error", frames)
    assert t is not None and (t.condition, t.proto) == ("dns-error", "udp")
    assert "NXDOMAIN" in t.detail and t.server == "10.96.0.10:53"
    assert run("failed", frames, now_ms=10_000) is None  # an answer is an answer


def test_connections_with_a_final_outcome_are_forgotten() -> None:
    w = Watcher(parse_until("failed"), linktype=1)
    for i in range(200):
        for t_ms, frame in HEALTHY:
            port = 30000 + i
            f = frame.replace(b"\x9c\x40", struct.pack(">H", port))
            w.feed(T0 + (i * 10 + t_ms) * MS, f, 0, len(f))
    w.tick(T0 + 10_000 * MS)
    assert w.connections == 200 and w.open_connections == 0 and w.fired is None


def test_a_rejected_syn_that_gets_through_stays_one_connection() -> None:
    # Not watching for rejections: the ICMP error must not make the connection forgotten, since
    # the retransmitted SYN can still get through (the outcome rules say only ok and reset are
    # final); its reset is then that of the connection begun by the first SYN.
    syn = out(S)
    w = Watcher(parse_until("reset"), linktype=1)
    for t_ms, frame in [(0, syn), (1, icmp_unreachable(syn[14:42]))]:
        w.feed(T0 + t_ms * MS, frame, 0, len(frame))
    assert w.tick(T0 + 500 * MS) is None and w.open_connections == 1
    for t_ms, frame in [(1000, out(S)), (1001, back(S | A)), (1002, back(R | A))]:
        t = w.feed(T0 + t_ms * MS, frame, 0, len(frame))
    assert t is not None and t.condition == "reset"
    assert t.started_ns == T0 and w.connections == 1

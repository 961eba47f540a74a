from __future__ import annotations

from pathlib import Path

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.pcap.helpers import payload_frames
from tests.protocols.messages import (
    SVC,
    client_hello,
    cname_reply,
    corrupted_reply,
    dns_query,
    dns_reply,
)
from tracer.model import Connection, Endpoint, Journey, Observation, Tuple5
from tracer.summary import Exchange, summarize, summarize_connection


def test_http_summary() -> None:
    ex = Exchange(
        "tcp",
        b"GET /hello HTTP/1.1\r\nHost: 10.96.0.100\r\n\r\n",
        b"HTTP/1.1 404 Not Found\r\n\r\n",
        ports=(80, 8080),
    )
    assert summarize(ex) == "HTTP GET /hello (Host 10.96.0.100) -> 404"
    no_host = Exchange("tcp", b"GET /hello HTTP/1.0\r\n\r\n", b"HTTP/1.0 200 OK\r\n\r\n")
    assert summarize(no_host) == "HTTP GET /hello -> 200"
    assert summarize(Exchange("tcp", b"POST /api HTTP/1.1\r\n\r\n")) == (
        "HTTP POST /api -> no response"
    )


def test_dns_a_answer() -> None:
    q = dns_query(SVC)
    r = dns_reply(SVC, [(SVC, "A", "10.96.0.100")])
    assert summarize(Exchange("udp", q, r, ports=(53,))) == (
        f"DNS A {SVC} -> 10.96.0.100 (NOERROR)"
    )


def test_dns_cname_chain_shows_the_addresses() -> None:
    text = summarize(Exchange("udp", dns_query("www.example.com"), cname_reply()))
    assert text == "DNS A www.example.com -> 192.0.2.1, 192.0.2.2 (NOERROR)"


def test_dns_nxdomain_and_aaaa_and_no_reply() -> None:
    q = dns_query("nope.default.svc.cluster.local")
    r = dns_reply("nope.default.svc.cluster.local", [], rcode=3)
    assert summarize(Exchange("udp", q, r)) == "DNS A nope.default.svc.cluster.local -> NXDOMAIN"
    q6 = dns_query("v6.example", "AAAA")
    r6 = dns_reply("v6.example", [("v6.example", "AAAA", "2001:db8::1")])
    assert summarize(Exchange("udp", q6, r6)).endswith("-> 2001:db8::1 (NOERROR)")
    assert summarize(Exchange("udp", q)) == "DNS A nope.default.svc.cluster.local -> no reply"


def test_dns_over_tcp_uses_the_length_prefix() -> None:
    q = dns_query(SVC)
    r = dns_reply(SVC, [(SVC, "A", "10.96.0.100")])
    framed = Exchange(
        "tcp", len(q).to_bytes(2, "big") + q, len(r).to_bytes(2, "big") + r, ports=(53,)
    )
    assert summarize(framed) == f"DNS A {SVC} -> 10.96.0.100 (NOERROR)"


def test_dns_reply_to_another_question_is_not_used() -> None:
    q = dns_query("a.example")
    other = dns_reply("b.example", [("b.example", "A", "192.0.2.7")])
    assert summarize(Exchange("udp", q, other)) == "DNS A a.example -> no reply"


def test_tls_client_hello_with_sni() -> None:
    hello = client_hello("api.example.test")
    assert summarize(Exchange("tcp", hello, ports=(443,))) == "TLS ClientHello SNI api.example.test"
    assert summarize(Exchange("tcp", hello[:60], ports=(443,))) == "TLS ClientHello"


def test_icmp_summary() -> None:
    ex = Exchange("icmp", icmp_request=(8, 0), icmp_response=(0, 0))
    assert summarize(ex) == "ICMP echo-request -> echo-reply"
    v6 = Exchange("icmpv6", icmp_request=(128, 0), icmp_response=(1, 4))
    assert summarize(v6) == "ICMPV6 echo-request -> destination-unreachable/port-unreachable"


def test_unknown_payload_gives_empty_summary() -> None:
    assert summarize(Exchange("tcp", b"\x00\x01binary", b"\xff")) == ""
    assert summarize(Exchange("udp", b"hello")) == ""
    assert summarize(Exchange("sctp", b"GET / HTTP/1.1\r\n\r\n")) == ""


# --- fuzzing: hostile bytes give "", never an exception -----------------------------------------


@settings(max_examples=400)
@given(st.binary(max_size=600), st.booleans())
def test_summary_never_raises(data: bytes, tcp: bool) -> None:
    text = summarize(Exchange("tcp" if tcp else "udp", data, data[::-1], ports=(53,)))
    assert isinstance(text, str) and "\n" not in text


@settings(max_examples=300)
@given(st.binary(min_size=12, max_size=300))
def test_summary_of_corrupted_real_dns_messages(noise: bytes) -> None:
    reply = corrupted_reply(noise)
    text = summarize(Exchange("udp", reply, reply))
    assert isinstance(text, str) and "\n" not in text


# --- the edge: reading payload bytes from a capture through the columns -------------------------


REQ = b"GET /hello HTTP/1.1\r\nHost: web\r\n\r\n"
RESP = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
FWD = Tuple5("tcp", Endpoint("10.244.1.7", 53700), Endpoint("10.244.2.9", 80))


def _connection(journeys: tuple[Journey, ...]) -> Connection:
    return Connection(0, "tcp", FWD, ("server",), (("server", FWD),), journeys, 0)


def _obs(frame: int, t: Tuple5, n: int) -> Observation:
    return Observation("server", frame, 0, t, payload_len=n)


def test_summary_read_through_journeys(tmp_path: Path) -> None:
    frames = payload_frames(tmp_path / "s.pcap", [(53700, REQ, 0, 1), (53700, RESP, 1, 0)])
    journeys = (
        Journey("syn", "forward", (_obs(0, FWD, 0),)),  # no payload: skipped
        Journey("data", "forward", (_obs(0, FWD, len(REQ)),)),
        Journey("data", "reverse", (_obs(1, FWD.reversed(), len(RESP)),)),
    )
    assert summarize_connection(_connection(journeys), {"server": frames}) == (
        "HTTP GET /hello (Host web) -> 200"
    )


def test_summary_falls_back_to_the_tuple_when_no_journey_has_payload(tmp_path: Path) -> None:
    frames = payload_frames(
        tmp_path / "s.pcap",
        [(1111, b"GET /other HTTP/1.1\r\n\r\n", 0, 1), (53700, REQ, 0, 1), (53700, RESP, 1, 0)],
    )
    assert summarize_connection(_connection(()), {"server": frames}) == (
        "HTTP GET /hello (Host web) -> 200"
    )


def test_summary_of_a_vanished_file_is_empty(tmp_path: Path) -> None:
    frames = payload_frames(tmp_path / "s.pcap", [(53700, REQ, 0, 1)])
    (tmp_path / "s.pcap").unlink()
    assert summarize_connection(_connection(()), {"server": frames}) == ""
    assert summarize_connection(_connection(()), {}) == ""


def test_read_limit_and_short_snaplen(tmp_path: Path) -> None:
    frames = payload_frames(tmp_path / "s.pcap", [(53700, REQ, 0, 1)])
    frames.columns["pcap_len"][0] = np.int32(10)  # the capture kept only 10 payload bytes
    journeys = (Journey("data", "forward", (_obs(0, FWD, len(REQ)),)),)
    assert summarize_connection(_connection(journeys), {"server": frames}) == ""

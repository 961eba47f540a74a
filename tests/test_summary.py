from __future__ import annotations

import ssl
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tracer.model import Connection, Endpoint, Journey, Observation, Tuple5
from tracer.pcap.columns import Frames, empty_columns
from tracer.summary import (
    Exchange,
    dns_message,
    http_request,
    http_status,
    icmp_name,
    summarize,
    summarize_connection,
    tls_sni,
)

# --- byte-level ground truth from independent encoders (scapy for DNS, OpenSSL for TLS) ---------


def dns_query(name: str, qtype: str = "A", txid: int = 0x1234) -> bytes:
    from scapy.layers.dns import DNS, DNSQR

    return bytes(DNS(id=txid, rd=1, qd=DNSQR(qname=name, qtype=qtype)))


def dns_reply(name: str, answers: list[tuple[str, str, str]], rcode: int = 0) -> bytes:
    from scapy.layers.dns import DNS, DNSQR, DNSRR

    rrs = [DNSRR(rrname=n, type=t, rdata=d, ttl=30) for n, t, d in answers]
    pkt = DNS(id=0x1234, qr=1, rd=1, ra=1, rcode=rcode, qd=DNSQR(qname=name), an=rrs)
    return bytes(pkt)


def client_hello(server_name: str) -> bytes:
    ctx = ssl.create_default_context()
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    conn = ctx.wrap_bio(incoming, outgoing, server_hostname=server_name)
    with pytest.raises(ssl.SSLWantReadError):
        conn.do_handshake()
    return outgoing.read()


SVC = "web.default.svc.cluster.local"
HELLO = client_hello("x.example")


def test_http_request_line_and_host() -> None:
    req = http_request(b"GET /hello?x=1 HTTP/1.1\r\nUser-Agent: curl\r\nhost: web:80\r\n\r\n")
    assert req is not None
    assert (req.method, req.target, req.host) == ("GET", "/hello?x=1", "web:80")
    assert http_status(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello") == 200
    assert http_status(b"HTTP/1.0 503\r\n\r\n") == 503
    assert http_request(b"\x16\x03\x01\x02\x00") is None
    assert http_status(b"HTTP/1.1 OK 200\r\n") is None


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
    r = dns_reply(
        "www.example.com",
        [
            ("www.example.com", "CNAME", "edge.example.net"),
            ("edge.example.net", "A", "192.0.2.1"),
            ("edge.example.net", "A", "192.0.2.2"),
        ],
    )
    msg = dns_message(r)
    assert msg is not None and msg.response
    assert msg.answers[0] == (5, "edge.example.net")
    text = summarize(Exchange("udp", dns_query("www.example.com"), r))
    assert text == "DNS A www.example.com -> 192.0.2.1, 192.0.2.2 (NOERROR)"


def test_dns_nxdomain_and_aaaa_and_no_reply() -> None:
    q = dns_query("nope.default.svc.cluster.local")
    r = dns_reply("nope.default.svc.cluster.local", [], rcode=3)
    assert summarize(Exchange("udp", q, r)) == "DNS A nope.default.svc.cluster.local -> NXDOMAIN"
    q6 = dns_query("v6.example", "AAAA")
    r6 = dns_reply("v6.example", [("v6.example", "AAAA", "2001:db8::1")])
    assert dns_message(q6) is not None and dns_message(q6).qtype_name == "AAAA"  # type: ignore[union-attr]
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


def test_tls_sni_from_a_real_client_hello() -> None:
    hello = client_hello("api.example.test")
    assert tls_sni(hello) == "api.example.test"
    assert summarize(Exchange("tcp", hello, ports=(443,))) == "TLS ClientHello SNI api.example.test"
    assert tls_sni(hello[:60]) is None  # cut before the extensions


def test_icmp_names() -> None:
    assert icmp_name(8) == "echo-request"
    assert icmp_name(3, 3) == "destination-unreachable/port-unreachable"
    assert icmp_name(128, v6=True) == "echo-request"
    assert icmp_name(1, 4, v6=True) == "destination-unreachable/port-unreachable"
    assert icmp_name(42) == "type-42"
    ex = Exchange("icmp", icmp_request=(8, 0), icmp_response=(0, 0))
    assert summarize(ex) == "ICMP echo-request -> echo-reply"


def test_unknown_payload_gives_empty_summary() -> None:
    assert summarize(Exchange("tcp", b"\x00\x01binary", b"\xff")) == ""
    assert summarize(Exchange("udp", b"hello")) == ""
    assert summarize(Exchange("sctp", b"GET / HTTP/1.1\r\n\r\n")) == ""


# --- fuzzing: hostile bytes give "" / None, never an exception ----------------------------------


@settings(max_examples=400)
@given(st.binary(max_size=600), st.booleans())
def test_decoders_never_raise(data: bytes, tcp: bool) -> None:
    http_request(data)
    http_status(data)
    dns_message(data, tcp=tcp)
    tls_sni(data)
    text = summarize(Exchange("tcp" if tcp else "udp", data, data[::-1], ports=(53,)))
    assert isinstance(text, str) and "\n" not in text


@settings(max_examples=300)
@given(st.binary(min_size=12, max_size=300))
def test_dns_decoder_on_corrupted_real_messages(noise: bytes) -> None:
    base = bytearray(dns_reply(SVC, [(SVC, "A", "10.96.0.100"), (SVC, "A", "10.96.0.101")]))
    for i, b in enumerate(noise[:40]):
        base[(i * 7 + b) % len(base)] = b  # flip bytes, including compression pointers
    msg = dns_message(bytes(base))
    assert msg is None or isinstance(msg.qname, str)
    summarize(Exchange("udp", bytes(base), bytes(base)))


@settings(max_examples=300)
@given(st.integers(min_value=0, max_value=600), st.binary(max_size=80))
def test_tls_decoder_on_cut_and_corrupted_client_hello(cut: int, tail: bytes) -> None:
    sni = tls_sni(HELLO[:cut] + tail)
    assert sni is None or isinstance(sni, str)


# --- the edge: reading payload bytes from a capture through the columns -------------------------


def _frames(path: Path, payloads: list[tuple[int, bytes, int, int]]) -> Frames:
    """Frames whose rows point at payloads written into `path` (src id, dst id per row)."""
    blob = bytearray(b"\xee" * 100)  # bytes before the first payload, as headers would be
    cols = empty_columns(len(payloads))
    for i, (sport, data, s, d) in enumerate(payloads):
        cols["payload_off"][i] = len(blob)
        cols["pcap_len"][i] = len(data)
        cols["payload_len"][i] = len(data)
        cols["src"][i], cols["dst"][i] = s, d
        cols["sport"][i], cols["dport"][i] = (sport, 80) if s == 0 else (80, sport)
        cols["proto"][i] = 6
        blob += data + b"\xee" * 30
    path.write_bytes(bytes(blob))
    return Frames(str(path), (1,), cols, (), ("10.244.1.7", "10.244.2.9"))


REQ = b"GET /hello HTTP/1.1\r\nHost: web\r\n\r\n"
RESP = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
FWD = Tuple5("tcp", Endpoint("10.244.1.7", 53700), Endpoint("10.244.2.9", 80))


def _connection(journeys: tuple[Journey, ...]) -> Connection:
    return Connection(0, "tcp", FWD, ("server",), (("server", FWD),), journeys, 0)


def _obs(frame: int, t: Tuple5, n: int) -> Observation:
    return Observation("server", frame, 0, t, payload_len=n)


def test_summary_read_through_journeys(tmp_path: Path) -> None:
    frames = _frames(tmp_path / "s.pcap", [(53700, REQ, 0, 1), (53700, RESP, 1, 0)])
    journeys = (
        Journey("syn", "forward", (_obs(0, FWD, 0),)),  # no payload: skipped
        Journey("data", "forward", (_obs(0, FWD, len(REQ)),)),
        Journey("data", "reverse", (_obs(1, FWD.reversed(), len(RESP)),)),
    )
    assert summarize_connection(_connection(journeys), {"server": frames}) == (
        "HTTP GET /hello (Host web) -> 200"
    )


def test_summary_falls_back_to_the_tuple_when_no_journey_has_payload(tmp_path: Path) -> None:
    frames = _frames(
        tmp_path / "s.pcap",
        [(1111, b"GET /other HTTP/1.1\r\n\r\n", 0, 1), (53700, REQ, 0, 1), (53700, RESP, 1, 0)],
    )
    assert summarize_connection(_connection(()), {"server": frames}) == (
        "HTTP GET /hello (Host web) -> 200"
    )


def test_summary_of_a_vanished_file_is_empty(tmp_path: Path) -> None:
    frames = _frames(tmp_path / "s.pcap", [(53700, REQ, 0, 1)])
    (tmp_path / "s.pcap").unlink()
    assert summarize_connection(_connection(()), {"server": frames}) == ""
    assert summarize_connection(_connection(()), {}) == ""


def test_read_limit_and_short_snaplen(tmp_path: Path) -> None:
    frames = _frames(tmp_path / "s.pcap", [(53700, REQ, 0, 1)])
    frames.columns["pcap_len"][0] = np.int32(10)  # the capture kept only 10 payload bytes
    journeys = (Journey("data", "forward", (_obs(0, FWD, len(REQ)),)),)
    assert summarize_connection(_connection(journeys), {"server": frames}) == ""

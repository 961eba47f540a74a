"""HTTP/1 request and status lines, and the headers that identify a request across a proxy."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from tracer.protocols.http import http_request, http_request_info, http_status


def test_http_request_line_and_host() -> None:
    req = http_request(b"GET /hello?x=1 HTTP/1.1\r\nUser-Agent: curl\r\nhost: web:80\r\n\r\n")
    assert req is not None
    assert (req.method, req.target, req.host) == ("GET", "/hello?x=1", "web:80")
    assert http_status(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello") == 200
    assert http_status(b"HTTP/1.0 503\r\n\r\n") == 503
    assert http_request(b"\x16\x03\x01\x02\x00") is None
    assert http_status(b"HTTP/1.1 OK 200\r\n") is None


def test_request_line_and_identifying_headers() -> None:
    raw = (
        b"GET /api/v1?x=1 HTTP/1.1\r\nHost: Web.Example.com:30090\r\n"
        b"X-Request-ID: 7f3a\r\n"
        b"traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\n\r\nbody"
    )
    info = http_request_info(raw)
    assert info is not None
    assert (info.method, info.target, info.host) == ("GET", "/api/v1?x=1", "Web.Example.com:30090")
    assert info.host_name == "web.example.com"
    assert info.request_id == "7f3a"
    assert info.trace_id == "4bf92f3577b34da6a3ce929d0e0e4736"


def test_not_a_request() -> None:
    assert http_request_info(b"HTTP/1.1 200 OK\r\n\r\n") is None
    assert http_request_info(b"\x16\x03\x01\x02\x00") is None
    assert http_request_info(b"") is None


# --- fuzzing: hostile bytes give None, never an exception ---------------------------------------


@settings(max_examples=400)
@given(st.binary(max_size=600))
def test_decoders_never_raise(data: bytes) -> None:
    req = http_request(data)
    assert req is None or "\n" not in req.target
    http_request_info(data)
    http_status(data)

"""Decoding the request that identifies a proxied request, and the exact fast sort."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from tracer.correlate import http_request_info
from tracer.correlate.kernels import packed_order


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


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.integers(0, 2**64 - 1), max_size=300),
    st.integers(0, 3),
)
def test_packed_order_is_a_stable_argsort(values: list[int], shape: int) -> None:
    k = np.array(values, dtype=np.uint64)
    if shape == 1:  # few distinct keys: many ties
        k = k % np.uint64(7)
    elif shape == 2:  # equal high bits, different low bits: the collision path
        k = (k & np.uint64(0xFF)) | np.uint64(0xABCD << 48)
    elif shape == 3:
        k = k >> np.uint64(40)  # small ids
    assert np.array_equal(packed_order(k), np.argsort(k, kind="stable"))

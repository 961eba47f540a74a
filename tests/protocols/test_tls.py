"""The ClientHello's server name, checked against a ClientHello OpenSSL writes."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.protocols.messages import client_hello
from tracer.protocols.tls import is_handshake, tls_reply, tls_sni

HELLO = client_hello("x.example")


def test_sni_from_a_real_client_hello() -> None:
    hello = client_hello("api.example.test")
    assert is_handshake(hello)
    assert tls_sni(hello) == "api.example.test"
    assert tls_sni(hello[:60]) is None  # cut before the extensions
    assert tls_sni(b"GET / HTTP/1.1\r\n\r\n") is None


def test_first_server_record() -> None:
    assert tls_reply(b"\x16\x03\x03\x00\x7a\x02\x00\x00\x76") == "ServerHello"
    assert tls_reply(b"\x15\x03\x03\x00\x02\x02\x28") == "alert"
    assert tls_reply(HELLO) is None  # a ClientHello is no answer


# --- fuzzing: hostile bytes give None, never an exception ---------------------------------------


@settings(max_examples=400)
@given(st.binary(max_size=600))
def test_decoders_never_raise(data: bytes) -> None:
    tls_sni(data)
    tls_reply(data)


@settings(max_examples=300)
@given(st.integers(min_value=0, max_value=600), st.binary(max_size=80))
def test_decoder_on_cut_and_corrupted_client_hello(cut: int, tail: bytes) -> None:
    sni = tls_sni(HELLO[:cut] + tail)
    assert sni is None or isinstance(sni, str)

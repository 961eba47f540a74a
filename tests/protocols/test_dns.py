"""DNS messages over UDP and TCP, checked against messages scapy encodes."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.protocols.messages import SVC, cname_reply, corrupted_reply, dns_query, dns_reply
from tracer.protocols.dns import dns_message


def test_cname_chain_keeps_every_answer_in_order() -> None:
    msg = dns_message(cname_reply())
    assert msg is not None and msg.response and msg.rcode_name == "NOERROR"
    assert msg.answers == ((5, "edge.example.net"), (1, "192.0.2.1"), (1, "192.0.2.2"))


def test_question_type_and_rcode() -> None:
    q6 = dns_message(dns_query("v6.example", "AAAA"))
    assert q6 is not None and not q6.response and q6.qtype_name == "AAAA"
    assert (q6.qname, q6.answers) == ("v6.example", ())
    nx = dns_message(dns_reply("nope.default.svc.cluster.local", [], rcode=3))
    assert nx is not None and nx.rcode_name == "NXDOMAIN" and nx.answers == ()


def test_transaction_id_is_decoded_from_the_wire() -> None:
    msg = dns_message(dns_query(SVC, txid=0xBEEF))
    assert msg is not None and msg.ident == 0xBEEF and not msg.response


def test_over_tcp_the_message_follows_its_length() -> None:
    r = dns_reply(SVC, [(SVC, "A", "10.96.0.100")])
    msg = dns_message(len(r).to_bytes(2, "big") + r, tcp=True)
    assert msg is not None and msg.qname == SVC and msg.answers == ((1, "10.96.0.100"),)
    assert dns_message(r, tcp=True) is None  # no length prefix: not a TCP message


# --- fuzzing: hostile bytes give None, never an exception ---------------------------------------


@settings(max_examples=400)
@given(st.binary(max_size=600), st.booleans())
def test_decoder_never_raises(data: bytes, tcp: bool) -> None:
    msg = dns_message(data, tcp=tcp)
    assert msg is None or isinstance(msg.qname, str)


@settings(max_examples=300)
@given(st.binary(min_size=12, max_size=300))
def test_decoder_on_corrupted_real_messages(noise: bytes) -> None:
    msg = dns_message(corrupted_reply(noise))
    assert msg is None or isinstance(msg.qname, str)

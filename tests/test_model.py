"""The one rule of the model: naming the rewrite between two tuples of one packet."""

from __future__ import annotations

from tracer.model import Endpoint, Tuple5, translation_kind

CLIENT = Tuple5("tcp", Endpoint("10.244.1.4", 40000), Endpoint("10.96.0.10", 80))
BACKEND = Endpoint("10.244.2.3", 8080)
NODE = Endpoint("192.168.50.11", 61000)


def test_a_changed_destination_is_dnat_and_a_changed_source_snat() -> None:
    dnat = Tuple5("tcp", CLIENT.src, BACKEND)
    assert translation_kind(CLIENT, dnat, False) == "DNAT"
    assert translation_kind(CLIENT, Tuple5("tcp", NODE, CLIENT.dst), False) == "SNAT"
    assert translation_kind(CLIENT, Tuple5("tcp", NODE, BACKEND), False) == "DNAT+SNAT"
    assert translation_kind(CLIENT, CLIENT, False) is None


def test_on_a_reply_conntrack_undoes_dnat_on_the_source_and_snat_on_the_destination() -> None:
    reply = Tuple5("tcp", BACKEND, CLIENT.src)
    assert translation_kind(reply, CLIENT.reversed(), True) == "un-DNAT"
    masq = Tuple5("tcp", BACKEND, NODE)
    assert translation_kind(masq, Tuple5("tcp", BACKEND, CLIENT.src), True) == "un-SNAT"
    assert translation_kind(masq, CLIENT.reversed(), True) == "un-DNAT+un-SNAT"

"""`conntrack -L` parsing on the reference's real lines."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from tracer.model import Endpoint, Tuple5
from tracer.rules.conntrack import parse_conntrack, parse_conntrack_line

POD_TO_CLUSTERIP = "tcp      6 86383 ESTABLISHED src=10.244.0.3 dst=10.96.0.1 sport=48242 dport=443 src=192.168.10.100 dst=10.244.0.3 sport=6443 dport=48242 [ASSURED] mark=0"
HOST_TO_CLUSTERIP = "tcp  6 86389 ESTABLISHED src=10.0.2.15 dst=10.96.0.1 sport=39156 dport=443 src=192.168.10.100 dst=10.0.2.15 sport=6443 dport=6826 [ASSURED]"
NODEPORT = "tcp 6 431997 ESTABLISHED src=203.0.113.2 dst=192.168.0.2 sport=45752 dport=3003 src=10.180.0.3 dst=10.180.0.254 sport=80 dport=16903 [ASSURED] mark=0 use=1"
UDP_UNREPLIED = "ipv4     2 udp      17 29 src=10.244.1.7 dst=10.96.0.10 sport=41000 dport=53 [UNREPLIED] src=10.244.1.2 dst=10.244.1.7 sport=53 dport=41000 mark=0 zone=3 use=1"


def test_pod_to_cluster_ip_is_dnat_only() -> None:
    e = parse_conntrack_line(POD_TO_CLUSTERIP)
    assert (e.proto, e.ttl, e.state, e.mark) == ("tcp", 86383, "ESTABLISHED", 0)
    assert e.original.dst == Endpoint("10.96.0.1", 443)
    assert e.reply.src == Endpoint("192.168.10.100", 6443)  # the endpoint
    assert e.dnat and not e.snat
    assert e.flags == ("ASSURED",)


def test_host_client_is_masqueraded_with_a_new_port() -> None:
    e = parse_conntrack_line(HOST_TO_CLUSTERIP)
    assert e.dnat and e.snat
    assert e.reply.dst == Endpoint("10.0.2.15", 6826)
    assert e.mark is None


def test_nodeport_dnat_and_snat() -> None:
    e = parse_conntrack_line(NODEPORT)
    assert e.dnat and e.snat and e.reply.dst.ip == "10.180.0.254"


def test_extended_prefix_unreplied_and_zone() -> None:
    e = parse_conntrack_line(UDP_UNREPLIED)
    assert (e.proto, e.state, e.zone) == ("udp", None, 3)
    assert e.flags == ("UNREPLIED",)
    assert e.reply.src == Endpoint("10.244.1.2", 53)


def test_table_keeps_good_lines_and_warns_on_the_rest() -> None:
    text = "\n".join(
        [
            POD_TO_CLUSTERIP,
            "garbage",
            NODEPORT,
            "conntrack v1.4.7 (conntrack-tools): 2 flow entries have been shown.",
        ]
    )
    t = parse_conntrack(text, source="ct.txt")
    assert len(t.entries) == 2
    assert t.warnings == ("ct.txt:2: ignored (not a conntrack entry): garbage",)


def test_table_finds_an_entry_by_either_tuple() -> None:
    t = parse_conntrack("\n".join([POD_TO_CLUSTERIP, NODEPORT]))
    sent = Tuple5("tcp", Endpoint("203.0.113.2", 45752), Endpoint("192.168.0.2", 3003))
    reply = Tuple5("tcp", Endpoint("10.180.0.3", 80), Endpoint("10.180.0.254", 16903))
    by_sent, by_reply = t.by_original(sent), t.by_reply(reply)
    assert by_sent is not None and by_sent.text == NODEPORT
    assert by_reply is not None and by_reply.text == NODEPORT
    # The reply tuple is not an original one, nor the other way round.
    assert t.by_original(reply) is None and t.by_reply(sent) is None


@settings(max_examples=300)
@given(st.text(max_size=300))
def test_random_text_never_raises(text: str) -> None:
    parse_conntrack(text)


@settings(max_examples=200)
@given(st.integers(0, len(NODEPORT)), st.text(alphabet=" =[]srcdtpo0123.", max_size=10))
def test_mutated_lines_never_raise(i: int, junk: str) -> None:
    t = parse_conntrack(NODEPORT[:i] + junk + NODEPORT[i:])
    assert len(t.entries) + len(t.warnings) == 1

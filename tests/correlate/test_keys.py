"""Signatures: unchanged by what NAT and routing rewrite, changed by what they leave alone."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from tracer.correlate.keys import signature, with_ip_id
from tracer.testing import synth

ips = st.ip_addresses(v=4).map(str)
ports = st.integers(1, 65535)

tcp_pkts = st.builds(
    synth.Pkt,
    proto=st.just("tcp"),
    src=ips,
    dst=ips,
    sport=ports,
    dport=ports,
    seq=st.integers(0, 2**32 - 1),
    ack=st.integers(0, 2**32 - 1),
    flags=st.integers(0, 0x3F),
    payload=st.binary(max_size=200),
    ip_id=st.integers(0, 65535),
    ttl=st.integers(1, 255),
    tsval=st.one_of(st.none(), st.integers(0, 2**32 - 1)),
    tsecr=st.integers(0, 2**32 - 1),
)


def _key(*pkts: synth.Pkt) -> list[int]:
    fr = synth.frames_from_specs([synth.Sighting(i, p) for i, p in enumerate(pkts)])
    c = fr.columns
    return [int(k) for k in with_ip_id(signature(c["proto"], c), c["ip_id"])]


@given(tcp_pkts, ips, ips, ports, ports, st.integers(1, 255))
def test_nat_and_routing_do_not_change_the_key(
    p: synth.Pkt, src: str, dst: str, sport: int, dport: int, ttl: int
) -> None:
    nat = replace(p, src=src, dst=dst, sport=sport, dport=dport, ttl=ttl)
    a, b = _key(p, nat)
    assert a == b


@given(tcp_pkts, st.integers(1, 2**32 - 1))
def test_seq_ack_and_payload_change_the_key(p: synth.Pkt, delta: int) -> None:
    keys = _key(
        p,
        replace(p, seq=(p.seq + delta) % 2**32),
        replace(p, ack=(p.ack + delta) % 2**32),
        replace(p, payload=p.payload + b"!"),
    )
    assert len(set(keys)) == 4


def test_ip_id_breaks_ties_and_icmp_id_is_ignored() -> None:
    ping = synth.Pkt("icmp", "10.0.0.1", "10.0.0.2", icmp_type=8, icmp_id=7, icmp_seq=1)
    a, b, c, d = _key(
        ping,
        replace(ping, icmp_id=9, src="192.168.0.1"),
        replace(ping, icmp_seq=2),
        replace(ping, ip_id=5),
    )
    assert a == b
    assert len({a, c, d}) == 3
    # Echo request and its reply carry the same data: the type tells them apart.
    (reply,) = _key(replace(ping, icmp_type=0))
    assert reply != a


def test_udp_key_is_length_and_payload() -> None:
    q = synth.Pkt("udp", "10.0.0.1", "10.96.0.10", 5000, 53, payload=b"abc")
    a, b, c = _key(q, replace(q, dst="10.244.2.5", sport=6000), replace(q, payload=b"abd"))
    assert a == b != c
    assert np.uint64(a) != 0

"""The columns built from sightings agree with the bytes of the same frames (scapy as oracle)."""

from __future__ import annotations

import pytest

from tests.testing.synth import ALL
from tracer.pcap.columns import OPT_TS, payload_hash
from tracer.testing.wire import frame_bytes


@pytest.mark.parametrize("make", ALL)
def test_columns_agree_with_the_bytes(make: object) -> None:
    from scapy.layers.inet import ICMP, IP, TCP, UDP
    from scapy.layers.inet6 import IPv6
    from scapy.layers.l2 import Ether
    from scapy.layers.vxlan import VXLAN

    sc = make()  # type: ignore[operator]
    for point, rows in sc.frames.items():
        fr = sc.columns(point)
        c = fr.columns
        for i, s in enumerate(rows):
            pkt = Ether(frame_bytes(s))
            if pkt.haslayer(VXLAN):
                pkt = pkt[VXLAN].payload
            ip = pkt[IP] if pkt.haslayer(IP) else pkt[IPv6]
            assert fr.addresses[c["src"][i]] == ip.src
            assert fr.addresses[c["dst"][i]] == ip.dst
            assert c["ttl"][i] == (ip.ttl if pkt.haslayer(IP) else ip.hlim)
            assert c["t_ns"][i] == s.t_ns
            if pkt.haslayer(IP):
                assert c["ip_id"][i] == ip.id
            l4 = next(pkt[x] for x in (TCP, UDP, ICMP) if pkt.haslayer(x))
            payload = bytes(l4.payload)
            if isinstance(l4, ICMP):
                payload = bytes(l4)[8:]
            assert c["payload_len"][i] == len(payload)
            assert c["phash"][i] == payload_hash(payload)
            if isinstance(l4, TCP):
                assert (c["seq"][i], c["ack"][i], c["tcp_flags"][i]) == (
                    l4.seq,
                    l4.ack,
                    int(l4.flags),
                )
                assert (c["sport"][i], c["dport"][i]) == (l4.sport, l4.dport)
                ts = dict(l4.options).get("Timestamp")
                assert bool(c["opts"][i] & OPT_TS) == (ts is not None)
                if ts is not None:
                    assert (c["tsval"][i], c["tsecr"][i]) == ts
            if isinstance(l4, ICMP):
                assert (c["icmp_type"][i], c["icmp_seq"][i]) == (l4.type, l4.seq)

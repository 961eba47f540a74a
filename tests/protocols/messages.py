"""Protocol messages built by independent encoders (scapy for DNS, OpenSSL for TLS): the byte-level
ground truth the decoders are checked against."""

from __future__ import annotations

import ssl

import pytest


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


def cname_reply() -> bytes:
    """An answer through a CNAME to two addresses, the chain first (as resolvers send it)."""
    return dns_reply(
        "www.example.com",
        [
            ("www.example.com", "CNAME", "edge.example.net"),
            ("edge.example.net", "A", "192.0.2.1"),
            ("edge.example.net", "A", "192.0.2.2"),
        ],
    )


def corrupted_reply(noise: bytes) -> bytes:
    """A real two-answer reply with bytes overwritten by `noise`, compression pointers included."""
    base = bytearray(dns_reply(SVC, [(SVC, "A", "10.96.0.100"), (SVC, "A", "10.96.0.101")]))
    for i, b in enumerate(noise[:40]):
        base[(i * 7 + b) % len(base)] = b
    return bytes(base)

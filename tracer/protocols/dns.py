"""DNS (RFC 1035, RFC 3596; RFC 7766 for TCP): the question, answers and rcode of a message.

Pure: bytes in, data out; None for anything that is not a standard query or response with one
question. Compression pointers are followed with a bound, so a pointer loop is no hang.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from tracer.protocols.text import printable

DNS_PORTS = frozenset({53, 5353})  # DNS and multicast DNS

DNS_TYPES = {
    1: "A",
    2: "NS",
    5: "CNAME",
    6: "SOA",
    12: "PTR",
    15: "MX",
    16: "TXT",
    28: "AAAA",
    33: "SRV",
    64: "SVCB",
    65: "HTTPS",
    255: "ANY",
}
DNS_RCODES = {
    0: "NOERROR",
    1: "FORMERR",
    2: "SERVFAIL",
    3: "NXDOMAIN",
    4: "NOTIMP",
    5: "REFUSED",
    6: "YXDOMAIN",
    7: "YXRRSET",
    8: "NXRRSET",
    9: "NOTAUTH",
    10: "NOTZONE",
}


@dataclass(frozen=True)
class DnsMessage:
    response: bool
    rcode: int
    qname: str
    qtype: int
    answers: tuple[tuple[int, str], ...]  # (type, rdata as text), in message order
    ident: int = 0  # the transaction ID that pairs a reply with its query (RFC 1035 §4.1.1)

    @property
    def qtype_name(self) -> str:
        return DNS_TYPES.get(self.qtype, f"TYPE{self.qtype}")

    @property
    def rcode_name(self) -> str:
        return DNS_RCODES.get(self.rcode, f"RCODE{self.rcode}")


class _ShortError(Exception):
    """The message ends (or points) outside its bytes."""


def _dns_name(msg: bytes, off: int) -> tuple[str, int]:
    """Decode a possibly compressed name at `off`; return it and the offset just past it."""
    labels: list[str] = []
    end = -1
    jumps = 0
    total = 0
    while True:
        if off >= len(msg):
            raise _ShortError
        n = msg[off]
        if n & 0xC0 == 0xC0:
            if off + 1 >= len(msg):
                raise _ShortError
            if end < 0:
                end = off + 2
            jumps += 1
            if jumps > 32:  # a pointer loop
                raise _ShortError
            off = ((n & 0x3F) << 8) | msg[off + 1]
            continue
        if n & 0xC0:
            raise _ShortError  # 0x40/0x80 label types are obsolete
        off += 1
        if n == 0:
            break
        if off + n > len(msg):
            raise _ShortError
        total += n + 1
        if total > 255:
            raise _ShortError
        labels.append(printable(msg[off : off + n], 63))
        off += n
    return ".".join(labels) or ".", (end if end >= 0 else off)


def dns_message(payload: bytes, *, tcp: bool = False) -> DnsMessage | None:
    """The question, answers and rcode of a standard query/response, or None.

    Over TCP the message follows a two-byte length (RFC 7766); a capture may cut it short, so
    answers that do not fit are dropped rather than making the whole message unreadable.
    """
    msg = payload
    if tcp:
        if len(msg) < 2:
            return None
        length = int.from_bytes(msg[:2], "big")
        msg = msg[2 : 2 + length]
    if len(msg) < 12:
        return None
    flags = int.from_bytes(msg[2:4], "big")
    qdcount = int.from_bytes(msg[4:6], "big")
    ancount = int.from_bytes(msg[6:8], "big")
    if (flags >> 11) & 0xF != 0 or qdcount != 1:  # only a standard query with one question
        return None
    try:
        qname, off = _dns_name(msg, 12)
        if off + 4 > len(msg):
            return None
        qtype = int.from_bytes(msg[off : off + 2], "big")
        off += 4
    except _ShortError:
        return None
    answers: list[tuple[int, str]] = []
    try:
        for _ in range(min(ancount, 64)):
            _, off = _dns_name(msg, off)
            if off + 10 > len(msg):
                break
            rtype = int.from_bytes(msg[off : off + 2], "big")
            rdlen = int.from_bytes(msg[off + 8 : off + 10], "big")
            off += 10
            if off + rdlen > len(msg):
                break
            rdata = msg[off : off + rdlen]
            if rtype == 1 and rdlen == 4:
                answers.append((rtype, str(ipaddress.IPv4Address(rdata))))
            elif rtype == 28 and rdlen == 16:
                answers.append((rtype, str(ipaddress.IPv6Address(rdata))))
            elif rtype in (2, 5, 12):
                answers.append((rtype, _dns_name(msg, off)[0]))
            else:
                answers.append((rtype, DNS_TYPES.get(rtype, f"TYPE{rtype}")))
            off += rdlen
    except _ShortError:
        pass
    ident = int.from_bytes(msg[0:2], "big")
    return DnsMessage(bool(flags >> 15), flags & 0xF, qname, qtype, tuple(answers), ident)

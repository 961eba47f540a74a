"""The lab DNS server's answers, decoded independently with struct (RFC 1035 layout)."""

from __future__ import annotations

import socket
import struct

from hypothesis import given
from hypothesis import strategies as st

from tracer.lab.dns import answer

ZONE = {"web.default.svc.cluster.local": "10.96.0.100"}


def query(name: str, qtype: int = 1, qid: int = 0x1234) -> bytes:
    q = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0"
    return struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0) + q + struct.pack("!HH", qtype, 1)


def test_a_record() -> None:
    r = answer(query("web.default.svc.cluster.local"), ZONE)
    qid, flags, qd, an = struct.unpack_from("!HHHH", r)
    assert (qid, flags & 0xF, qd, an) == (0x1234, 0, 1, 1)
    assert flags & 0x8000 and flags & 0x0100  # a response, RD copied
    assert socket.inet_ntoa(r[-4:]) == "10.96.0.100"


def test_search_expansion_misses_are_nxdomain() -> None:
    for name in (
        "web.svc.cluster.local",
        "web.cluster.local",
        "web",
        "wbe.default.svc.cluster.local",
    ):
        flags = struct.unpack_from("!H", answer(query(name), ZONE), 2)[0]
        assert flags & 0xF == 3, name


def test_aaaa_of_known_name_is_nodata() -> None:
    r = answer(query("web.default.svc.cluster.local", qtype=28), ZONE)
    flags, qd, an = struct.unpack_from("!HHH", r, 2)
    assert (flags & 0xF, an) == (0, 0)


def test_case_insensitive() -> None:
    r = answer(query("WEB.Default.svc.cluster.local"), ZONE)
    assert struct.unpack_from("!H", r, 6)[0] == 1


@given(st.binary(max_size=80))
def test_garbage_never_raises(data: bytes) -> None:
    r = answer(data, ZONE)
    assert len(r) >= 12 and r[2] & 0x80


def test_an_ipv6_name_answers_aaaa_and_nodata_for_a() -> None:
    zone = {"web6.default.svc.cluster.local": "fd00:10:96::100"}
    r = answer(query("web6.default.svc.cluster.local", qtype=28), zone)
    flags, qd, an = struct.unpack_from("!HHH", r, 2)
    assert (flags & 0xF, an) == (0, 1)
    rtype, _, _, rdlen = struct.unpack_from("!HHIH", r, len(r) - 16 - 10)
    assert (rtype, rdlen) == (28, 16)
    assert socket.inet_ntop(socket.AF_INET6, r[-16:]) == "fd00:10:96::100"
    r = answer(query("web6.default.svc.cluster.local", qtype=1), zone)
    flags, qd, an = struct.unpack_from("!HHH", r, 2)
    assert (flags & 0xF, an) == (0, 0)

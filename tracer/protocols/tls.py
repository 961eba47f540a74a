"""TLS (RFC 8446 §4.1.2, RFC 6066 §3): the server name a ClientHello asks for, and what answered.

Pure: bytes in, data out; None for anything that is not the record looked for.
"""

from __future__ import annotations

from tracer.protocols.text import printable


def is_handshake(payload: bytes) -> bool:
    """The bytes start a TLS handshake record (content type 22, legacy version 3.x)."""
    return payload[:1] == b"\x16" and payload[1:2] == b"\x03"


def tls_sni(payload: bytes) -> str | None:
    """The server_name of a TLS ClientHello in the first record, or None."""
    b = payload
    # record: type 22 (handshake), legacy version 3.x; handshake: type 1 (client_hello)
    if len(b) < 9 or b[0] != 0x16 or b[1] != 3 or b[5] != 1:
        return None
    off = 9 + 2 + 32  # handshake header, legacy_version, random
    try:
        off += 1 + b[off]  # legacy_session_id
        off += 2 + int.from_bytes(b[off : off + 2], "big")  # cipher_suites
        off += 1 + b[off]  # legacy_compression_methods
        ext_end = off + 2 + int.from_bytes(b[off : off + 2], "big")
        off += 2
        while off + 4 <= min(ext_end, len(b)):
            etype = int.from_bytes(b[off : off + 2], "big")
            elen = int.from_bytes(b[off + 2 : off + 4], "big")
            off += 4
            if etype == 0:  # server_name: list length, name_type 0 (host_name), length, name
                if off + 5 > len(b) or b[off + 2] != 0:
                    return None
                nlen = int.from_bytes(b[off + 3 : off + 5], "big")
                name = b[off + 5 : off + 5 + nlen]
                if len(name) != nlen or not nlen:
                    return None
                return printable(name, 255)
            off += elen
    except IndexError:
        return None
    return None


def tls_reply(payload: bytes) -> str | None:
    """What a server's first record is: "ServerHello", "alert", or None."""
    if len(payload) >= 6 and payload[0] == 0x16 and payload[1] == 3 and payload[5] == 2:
        return "ServerHello"
    if len(payload) >= 5 and payload[0] == 0x15 and payload[1] == 3:
        return "alert"
    return None

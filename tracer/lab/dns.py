"""A small authoritative DNS server for the lab (the CoreDNS pod, and the external DNS).

Pure core: `answer(query, records)` takes a DNS message (RFC 1035) and returns the response
bytes: A (IPv4) or AAAA (IPv6) records for the configured names, NOERROR with no answer (NODATA) for other types of a
known name, NXDOMAIN otherwise. `main` serves it on UDP and TCP (RFC 1035 §4.2.2 length prefix).
Must not recurse, forward, or answer anything but the configured zone.
"""

from __future__ import annotations

import argparse
import socket
import socketserver
import struct
import sys
import threading

TYPE_A = 1
TYPE_AAAA = 28
CLASS_IN = 1
RCODE_NXDOMAIN = 3
RCODE_FORMERR = 1
TTL = 5  # CoreDNS's default for cluster records


class DnsFormatError(ValueError):
    """A query that cannot be parsed; the message says at which byte."""


def parse_question(msg: bytes) -> tuple[int, int, str, int, int, int]:
    """(id, flags, qname, qtype, qclass, end offset of the question)."""
    if len(msg) < 12:
        raise DnsFormatError(f"message is {len(msg)} bytes, shorter than the 12-byte header")
    qid, flags, qdcount = struct.unpack_from("!HHH", msg, 0)
    if qdcount != 1:
        raise DnsFormatError(f"qdcount is {qdcount}, expected 1")
    labels: list[str] = []
    off = 12
    while True:
        if off >= len(msg):
            raise DnsFormatError(f"name runs past the end at byte {off}")
        n = msg[off]
        off += 1
        if n == 0:
            break
        if n & 0xC0:
            raise DnsFormatError(f"compressed name in a question at byte {off - 1}")
        if off + n > len(msg):
            raise DnsFormatError(f"label runs past the end at byte {off}")
        labels.append(msg[off : off + n].decode("ascii", "replace"))
        off += n
    if off + 4 > len(msg):
        raise DnsFormatError(f"question type/class missing at byte {off}")
    qtype, qclass = struct.unpack_from("!HH", msg, off)
    return qid, flags, ".".join(labels).lower().rstrip("."), qtype, qclass, off + 4


def answer(query: bytes, records: dict[str, str]) -> bytes:
    """The response to `query` from the zone `records` (lower-case name -> IPv4 address, answered
    for A, or IPv6 address, answered for AAAA)."""
    try:
        qid, flags, qname, qtype, qclass, end = parse_question(query)
    except DnsFormatError:
        qid = struct.unpack_from("!H", query, 0)[0] if len(query) >= 2 else 0
        return struct.pack("!HHHHHH", qid, 0x8000 | RCODE_FORMERR, 0, 0, 0, 0)
    question = query[12:end]
    rd = flags & 0x0100
    base = 0x8000 | 0x0400 | rd  # QR, AA, copy RD
    ip = records.get(qname)
    if ip is None:
        return struct.pack("!HHHHHH", qid, base | RCODE_NXDOMAIN, 1, 0, 0, 0) + question
    v6 = ":" in ip
    if qtype != (TYPE_AAAA if v6 else TYPE_A) or qclass != CLASS_IN:
        return struct.pack("!HHHHHH", qid, base, 1, 0, 0, 0) + question
    rdata = socket.inet_pton(socket.AF_INET6, ip) if v6 else socket.inet_aton(ip)
    rr = struct.pack("!HHHIH", 0xC00C, qtype, CLASS_IN, TTL, len(rdata)) + rdata
    return struct.pack("!HHHHHH", qid, base, 1, 1, 0, 0) + question + rr


def parse_records(items: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        name, sep, ip = item.partition("=")
        if not sep:
            raise SystemExit(f"--record {item!r}: expected NAME=IP")
        try:
            socket.inet_pton(socket.AF_INET6 if ":" in ip else socket.AF_INET, ip)
        except OSError:
            raise SystemExit(f"--record {item!r}: {ip!r} is not an IP address") from None
        out[name.lower().rstrip(".")] = ip
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="tracer.lab.dns")
    ap.add_argument("--bind", default="0.0.0.0")
    ap.add_argument("--port", type=int, default=53)
    ap.add_argument("--record", action="append", default=[], help="NAME=IP (repeatable)")
    a = ap.parse_args(argv)
    records = parse_records(a.record)

    class Udp(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            data, sock = self.request
            sock.sendto(answer(data, records), self.client_address)

    class Tcp(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            while True:
                head = self.rfile.read(2)
                if len(head) < 2:
                    return
                (n,) = struct.unpack("!H", head)
                msg = self.rfile.read(n)
                if len(msg) < n:
                    return
                resp = answer(msg, records)
                self.wfile.write(struct.pack("!H", len(resp)) + resp)

    socketserver.ThreadingUDPServer.allow_reuse_address = True
    socketserver.ThreadingTCPServer.allow_reuse_address = True
    udp = socketserver.ThreadingUDPServer((a.bind, a.port), Udp)
    tcp = socketserver.ThreadingTCPServer((a.bind, a.port), Tcp)
    threading.Thread(target=tcp.serve_forever, daemon=True).start()
    sys.stderr.write(f"listening on {a.bind}:{a.port} udp+tcp, {len(records)} records\n")
    sys.stderr.flush()
    try:
        udp.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()

"""One record or one text line per frame of a `Frames`, for `pathtrace packets`.

Frames are numbered from 1, as Wireshark and `tcpdump -# -r` number them, under the name `frame`
(the same number the path, explain and diagnose outputs give). Pure: columns in, dicts/strings out, generated lazily in chunks so that a million-frame file
streams without one huge string. Never reads files or prints.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from tracer.pcap.columns import DIR_IN, DIR_OUT, Frames

# tcpdump's flag letters, in tcpdump's order ("." is ACK): SYN+ACK prints "S.", FIN+ACK "F.".
_FLAG_LETTERS = (
    (0x01, "F"),
    (0x02, "S"),
    (0x04, "R"),
    (0x08, "P"),
    (0x10, "."),
    (0x20, "U"),
    (0x40, "E"),
    (0x80, "W"),
)
_PROTO_NAMES = {6: "tcp", 17: "udp", 1: "icmp", 58: "icmpv6"}
_IP_LAYERS = ("ipv4", "ipv6")
_CHUNK = 4096

COLUMNS = (
    ("frame", 6, ">"),
    ("time (UTC)", 30, "<"),
    ("iface", 10, "<"),
    ("dir", 3, "<"),
    ("encap", 22, "<"),
    ("proto", 6, "<"),
    ("src", 22, "<"),
    ("dst", 22, "<"),
    ("ip_id", 5, ">"),
    ("ttl", 3, ">"),
    ("seq", 10, ">"),
    ("ack", 10, ">"),
    ("flags", 5, "<"),
    ("len", 6, ">"),
)


def tcp_flags_text(flags: int) -> str:
    """tcpdump's rendering of TCP flags: "S", "S.", "P.", "F.", "R"; "none" for no flag."""
    text = "".join(letter for bit, letter in _FLAG_LETTERS if flags & bit)
    return text or "none"


def split_stack(stack: tuple[str, ...], family: int) -> tuple[str, str]:
    """(encapsulation around the innermost packet, innermost protocol) from an encap stack.

    ("eth","ipv4","udp","vxlan","eth","ipv4","tcp") -> ("eth/ipv4/udp/vxlan/eth", "tcp").
    """
    ips = [i for i, layer in enumerate(stack) if layer in _IP_LAYERS]
    if family and ips:
        last_ip = ips[-1]
        outer = stack[:last_ip]
        inner = stack[last_ip + 1] if last_ip + 1 < len(stack) else stack[last_ip]
    else:
        outer, inner = stack[:-1], (stack[-1] if stack else "?")
    return "/".join(outer) or "-", inner


def format_time(t_ns: int) -> str:
    """Epoch nanoseconds as ISO 8601 UTC with nanoseconds; "-" for a frame without a timestamp."""
    if t_ns == 0:
        return "-"
    sec, ns = divmod(t_ns, 1_000_000_000)
    try:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec))
    except (OverflowError, OSError, ValueError):
        return f"{sec}.{ns:09d}"
    return f"{stamp}.{ns:09d}Z"


def interface_name(frames: Frames, iface: int, sll2: bool, links: Mapping[int, str]) -> str:
    """The name of a frame's interface: pcapng if_name, the node's links for SLL2, else the id."""
    if iface < 0:
        return "-"
    if sll2:
        return links.get(iface, str(iface))
    return frames.interfaces.get(iface, str(iface))


def records(
    frames: Frames,
    links: Mapping[int, str] | None = None,
    limit: int | None = None,
    *,
    first: int = 0,
) -> Iterator[dict[str, Any]]:
    """One JSON-ready dict per frame (the `pathtrace packets --format jsonl` schema); `first` is
    the file position of `frames`' first row when it is a piece of a larger file."""
    links = links or {}
    n = len(frames) if limit is None else min(limit, len(frames))
    split = [split_stack(s, 4 if any(x in _IP_LAYERS for x in s) else 0) for s in frames.encaps]
    addresses = frames.addresses
    names = (
        "t_ns iface direction encap family proto src dst sport dport ip_id ttl seq ack "
        "tcp_flags payload_len icmp_type icmp_code"
    ).split()
    for start in range(0, n, _CHUNK):
        stop = min(n, start + _CHUNK)
        c = {name: frames.columns[name][start:stop].tolist() for name in names}
        for k in range(stop - start):
            family = c["family"][k]
            encap_id = c["encap"][k]
            stack = frames.encaps[encap_id]
            outer, inner = split[encap_id] if family else split_stack(stack, 0)
            proto = c["proto"][k]
            is_tcp = family != 0 and proto == 6
            t_ns = c["t_ns"][k]
            src, dst = c["src"][k], c["dst"][k]
            direction = c["direction"][k]
            record: dict[str, Any] = {
                "index": first + start + k,  # position in the file, from 0
                "frame": first + start + k + 1,  # Wireshark's frame number, from 1
                "t_ns": t_ns or None,
                "interface": interface_name(
                    frames, c["iface"][k], bool(stack) and stack[0] == "sll2", links
                ),
                "direction": "in"
                if direction == DIR_IN
                else "out"
                if direction == DIR_OUT
                else None,
                "encap": outer,
                "proto": inner if not family else _PROTO_NAMES.get(proto, inner),
                "src": addresses[src] if src >= 0 else None,
                "dst": addresses[dst] if dst >= 0 else None,
                "sport": c["sport"][k] if c["sport"][k] >= 0 else None,
                "dport": c["dport"][k] if c["dport"][k] >= 0 else None,
                "ip_id": c["ip_id"][k] if c["ip_id"][k] >= 0 else None,
                "ttl": c["ttl"][k] if c["ttl"][k] >= 0 else None,
                "seq": c["seq"][k] if is_tcp else None,
                "ack": c["ack"][k] if is_tcp else None,
                "flags": tcp_flags_text(c["tcp_flags"][k]) if is_tcp else None,
                "payload_len": c["payload_len"][k] if family else None,
            }
            if c["icmp_type"][k] >= 0:
                record["icmp_type"] = c["icmp_type"][k]
                record["icmp_code"] = c["icmp_code"][k]
            yield record


def _endpoint(address: str | None, port: int | None) -> str:
    if address is None:
        return "-"
    if port is None:
        return address
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def header_line() -> str:
    return " ".join(f"{name:{align}{width}}" for name, width, align in COLUMNS).rstrip()


def table_line(r: Mapping[str, Any]) -> str:
    """One aligned text line for a record of `records`."""
    proto = r["proto"]
    if "icmp_type" in r:
        proto = f"{proto}:{r['icmp_type']}/{r['icmp_code']}"
    values = (
        r["frame"],
        format_time(r["t_ns"] or 0),
        r["interface"],
        r["direction"] or "-",
        r["encap"],
        proto,
        _endpoint(r["src"], r["sport"]),
        _endpoint(r["dst"], r["dport"]),
        "-" if r["ip_id"] is None else r["ip_id"],
        "-" if r["ttl"] is None else r["ttl"],
        "-" if r["seq"] is None else r["seq"],
        "-" if r["ack"] is None else r["ack"],
        r["flags"] or "-",
        "-" if r["payload_len"] is None else r["payload_len"],
    )
    return " ".join(
        f"{value!s:{align}{width}}"
        for value, (_, width, align) in zip(values, COLUMNS, strict=True)
    ).rstrip()


def table_chunks(
    pieces: Iterable[Frames], links: Mapping[int, str] | None = None, limit: int | None = None
) -> Iterator[str]:
    """The table of consecutive pieces of one file as text chunks of up to a few thousand lines
    each (header first); each piece is only formatted when the previous chunks are used."""
    yield header_line() + "\n"
    yield from _chunked(table_line(r) for r in _all_records(pieces, links, limit))


def jsonl_chunks(
    pieces: Iterable[Frames], links: Mapping[int, str] | None = None, limit: int | None = None
) -> Iterator[str]:
    """`records` of consecutive pieces of one file as JSON lines, in chunks."""
    yield from _chunked(
        json.dumps(r, separators=(",", ":")) for r in _all_records(pieces, links, limit)
    )


def _all_records(
    pieces: Iterable[Frames], links: Mapping[int, str] | None, limit: int | None
) -> Iterator[dict[str, Any]]:
    first = 0
    if limit is not None and limit <= 0:
        return
    for frames in pieces:
        yield from records(frames, links, None if limit is None else limit - first, first=first)
        first += len(frames)
        if limit is not None and first >= limit:
            return  # the next piece is not decoded


def _chunked(lines: Iterable[str]) -> Iterator[str]:
    batch: list[str] = []
    for line in lines:
        batch.append(line)
        if len(batch) >= _CHUNK:
            yield "\n".join(batch) + "\n"
            batch = []
    if batch:
        yield "\n".join(batch) + "\n"

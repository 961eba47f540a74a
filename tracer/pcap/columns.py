"""The column contract between the capture reader and everything that consumes it.

A `Frames` holds one row per frame of one capture file, as numpy columns; nothing here is a
Python object per packet. The reader fills it; the correlator, `packets` and the report read it.
Absent values use the sentinel named beside each column, never NaN. A column that holds one
value on every row (no ICMP errors in the file: all `quoted_*` are absent) is stored once, as a
read-only view of that value: consumers read columns and never write them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

# Direction codes (pcapng epb_flags bits 0-1, SLL/SLL2 pkttype 4 = outgoing).
DIR_UNKNOWN = 0
DIR_IN = 1
DIR_OUT = 2

# TCP flag bits (RFC 9293, RFC 3168).
TH_FIN = 0x01
TH_SYN = 0x02
TH_RST = 0x04
TH_PSH = 0x08
TH_ACK = 0x10
TH_URG = 0x20
TH_ECE = 0x40
TH_CWR = 0x80

# Bits of the `opts` column.
OPT_TS = 0x01  # TCP timestamps option present: tsval/tsecr are valid
OPT_TRUNCATED = 0x02  # the frame was cut before the end of the headers that matter
OPT_FRAGMENT = 0x04  # an IP fragment (non-first fragments have no L4 header)
OPT_SUPER = 0x08  # an offload super-segment: IPv4 total length 0, or longer than any MTU
OPT_MSS = 0x10  # a TCP MSS option is present (SYNs): mss is valid

# (name, dtype, sentinel for "absent")
COLUMNS: tuple[tuple[str, str, int], ...] = (
    ("t_ns", "int64", 0),  # epoch nanoseconds as stamped by the capturing host
    ("iface", "int32", -1),  # pcapng interface id, SLL2 ifindex, or -1
    ("direction", "int8", DIR_UNKNOWN),
    ("encap", "uint8", 0),  # index into Frames.encaps
    ("family", "uint8", 0),  # 4, 6, or 0 for a frame with no IP inside
    ("proto", "uint8", 0),  # innermost IP protocol number (6 tcp, 17 udp, 1 icmp, 58 icmpv6)
    ("src", "int32", -1),  # index into Frames.addresses
    ("dst", "int32", -1),
    ("sport", "int32", -1),  # TCP/UDP ports, -1 for other protocols
    ("dport", "int32", -1),
    ("ip_id", "int32", -1),  # IPv4 identification, -1 for IPv6
    ("ttl", "int16", -1),  # IPv4 TTL or IPv6 hop limit
    ("seq", "uint32", 0),
    ("ack", "uint32", 0),
    ("tcp_flags", "uint8", 0),
    ("payload_len", "int32", 0),  # L4 payload length from the headers (not from caplen)
    ("tsval", "uint32", 0),  # valid when opts & OPT_TS
    ("tsecr", "uint32", 0),
    ("mss", "uint16", 0),  # valid when opts & OPT_MSS
    ("opts", "uint8", 0),
    ("phash", "uint32", 0),  # crc32 of the first 64 captured payload bytes (0 when none)
    ("pcap_len", "int32", 0),  # payload bytes actually present in the file (<= payload_len)
    ("icmp_type", "int16", -1),
    ("icmp_code", "int16", -1),
    ("icmp_id", "int32", -1),  # echo identifier (NAT may rewrite it)
    ("icmp_seq", "int32", -1),  # echo sequence number
    ("payload_off", "int64", -1),  # absolute file offset of the L4 payload, -1 when none
    ("origlen", "int32", 0),  # original frame length on the wire
    # ICMP/ICMPv6 errors (RFC 792, RFC 4443) quote the IP header and the first 8 bytes of L4 of
    # the packet that caused them: its protocol, ports, and TCP seq (NAT leaves the seq alone).
    ("quoted_proto", "int16", -1),
    ("quoted_sport", "int32", -1),
    ("quoted_dport", "int32", -1),
    ("quoted_seq", "int64", -1),
)

COLUMN_NAMES: tuple[str, ...] = tuple(name for name, _, _ in COLUMNS)


@dataclass(frozen=True)
class Frames:
    """All frames of one capture file, decoded to the innermost IP packet.

    Row i is frame i of the file (0-based, every frame, IP or not). `encaps[e]` is the stack of
    layers of encapsulation id e, outermost first, e.g. ("eth", "ipv4", "udp", "vxlan", "eth",
    "ipv4", "tcp"). `addresses[a]` is the text form of address id a. `interfaces` maps an iface
    id to its name where the file says it (pcapng if_name); SLL2 ifindexes need the node's links.
    """

    path: str
    linktypes: tuple[int, ...]
    columns: dict[str, npt.NDArray[np.generic]]
    encaps: tuple[tuple[str, ...], ...]
    addresses: tuple[str, ...]
    interfaces: dict[int, str] = field(default_factory=dict)
    comments: dict[int, str] = field(default_factory=dict)  # frame index -> opt_comment
    warnings: tuple[str, ...] = ()
    # Per address id: the IPv4 address as an integer (0..2**32-1), -1 for an IPv6 one; None when
    # the reader did not say (merging address tables by number is then done by text).
    address_keys: npt.NDArray[np.int64] | None = None

    def __len__(self) -> int:
        return int(self.columns["t_ns"].shape[0])

    def col(self, name: str) -> npt.NDArray[np.generic]:
        return self.columns[name]


def store_constants_once(
    columns: dict[str, npt.NDArray[np.generic]],
) -> dict[str, npt.NDArray[np.generic]]:
    """The same columns, each one that holds a single value on every row replaced by a
    read-only zero-stride view of that value (numpy indexing and arithmetic see no difference;
    the memory of the column is freed)."""
    out: dict[str, npt.NDArray[np.generic]] = {}
    for name, col in columns.items():
        n = int(col.shape[0])
        if n > 1 and col.strides[0] != 0:
            value = col[0]
            # A sample first: most columns that vary show it within a few thousand rows.
            if bool((col[:: max(1, n // 4096)] == value).all()) and bool((col == value).all()):
                col = np.broadcast_to(col[:1].copy(), (n,))
        out[name] = col
    return out


def empty_columns(n: int) -> dict[str, npt.NDArray[np.generic]]:
    """Columns for n rows, each filled with its sentinel."""
    return {name: np.full(n, sentinel, dtype=dtype) for name, dtype, sentinel in COLUMNS}


# The payload hash: FNV-style mix of the first 64 payload bytes read as eight little-endian
# 64-bit words (zero-padded). Chosen because numpy can compute it for a whole batch at once;
# the reader's vectorised version must give exactly `payload_hash(payload)` for every frame.
PHASH_BYTES = 64
PHASH_MULTIPLIERS: tuple[int, ...] = (
    0x9E3779B97F4A7C15,
    0xC2B2AE3D27D4EB4F,
    0x165667B19E3779F9,
    0xD6E8FEB86659FD93,
    0xFF51AFD7ED558CCD,
    0xC4CEB9FE1A85EC53,
    0x94D049BB133111EB,
    0xBF58476D1CE4E5B9,
)
_MASK64 = (1 << 64) - 1


def payload_hash(payload: bytes) -> int:
    """The `phash` column's value for a payload (0 for an empty one).

    Only the first PHASH_BYTES bytes count. A frame whose capture holds fewer than
    min(PHASH_BYTES, payload_len) payload bytes has a partial hash: consumers must not key on it.
    """
    if not payload:
        return 0
    block = payload[:PHASH_BYTES].ljust(PHASH_BYTES, b"\0")
    h = 0
    for i, mult in enumerate(PHASH_MULTIPLIERS):
        word = int.from_bytes(block[i * 8 : i * 8 + 8], "little")
        h = (h + word * mult) & _MASK64
    h ^= h >> 31
    h = (h * 0x94D049BB133111EB) & _MASK64
    h ^= h >> 29
    folded = (h ^ (h >> 32)) & 0xFFFFFFFF
    return folded or 1  # 0 means "no payload"


def payload_hash_batch(
    block: npt.NDArray[np.uint8], lengths: npt.NDArray[np.integer]
) -> npt.NDArray[np.uint32]:
    """Vectorised `payload_hash`: `block` is (N, PHASH_BYTES) uint8, zero past each payload's end."""
    words = np.ascontiguousarray(block).view("<u8").reshape(-1, PHASH_BYTES // 8)
    mults = np.array(PHASH_MULTIPLIERS, dtype=np.uint64)
    with np.errstate(over="ignore"):
        h = (words * mults).sum(axis=1, dtype=np.uint64)
        h ^= h >> np.uint64(31)
        h = h * np.uint64(0x94D049BB133111EB)
        h ^= h >> np.uint64(29)
    folded = ((h ^ (h >> np.uint64(32))) & np.uint64(0xFFFFFFFF)).astype(np.uint32)
    folded[folded == 0] = 1
    folded[np.asarray(lengths) <= 0] = 0
    return folded

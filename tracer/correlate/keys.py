"""NAT-invariant packet signatures, computed for a whole column batch at once.

A signature is a uint64 hash of what netfilter NAT, routing and overlays leave alone
(reference/correlation.md section 1): TCP seq, ack, the six classic flags, payload length,
TSval/TSecr when the option is present and the payload hash; UDP length and payload hash; ICMP
type, code, sequence and payload hash. It never includes addresses, ports, TTL, checksums or the
ICMP echo identifier. Pure numpy; no Python loop per packet.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import numpy.typing as npt

from tracer.pcap.columns import OPT_TS, PHASH_BYTES, TH_ACK, TH_FIN, TH_PSH, TH_RST, TH_SYN, TH_URG

U64 = npt.NDArray[np.uint64]
I64 = npt.NDArray[np.int64]

# ECE/CWR are left out on purpose: they are end-to-end, but nothing gains from them and some
# middleboxes clear them.
KEY_FLAGS = TH_FIN | TH_SYN | TH_RST | TH_PSH | TH_ACK | TH_URG

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_S31 = np.uint64(31)
_S29 = np.uint64(29)


def mix(h: U64, x: npt.NDArray[np.generic]) -> U64:
    """Fold one more column into a running 64-bit hash (splitmix64 finaliser)."""
    with np.errstate(over="ignore"):
        v = h ^ np.asarray(x).astype(np.int64).view(np.uint64)
        v = v * _M1
        v ^= v >> _S31
        v = v * _M2
        v ^= v >> _S29
    return v


def seed(n: int, value: int) -> U64:
    return np.full(n, value, dtype=np.uint64)


def partial_hash(
    payload_len: npt.NDArray[np.generic], pcap_len: npt.NDArray[np.generic]
) -> npt.NDArray[np.bool_]:
    """Rows whose payload hash covers fewer bytes than it should (a short snaplen)."""
    plen = np.asarray(payload_len, dtype=np.int64)
    need = np.minimum(plen, PHASH_BYTES)
    return (plen > 0) & (np.asarray(pcap_len, dtype=np.int64) < need)


def signature(
    proto: npt.NDArray[np.generic],
    cols: Mapping[str, npt.NDArray[np.generic]],
    *,
    tcp_phash: bool = True,
) -> U64:
    """The invariant signature of every row (rows of other protocols get a proto-only hash)."""
    n = int(np.asarray(proto).shape[0])
    p = np.asarray(proto, dtype=np.int64)
    tcp = p == 6
    icmp = (p == 1) | (p == 58)
    has_ts = tcp & ((np.asarray(cols["opts"]).astype(np.int64) & OPT_TS) != 0)
    zero = np.zeros(n, dtype=np.int64)
    seq = np.where(tcp, np.asarray(cols["seq"], dtype=np.int64), zero)
    ack = np.where(tcp, np.asarray(cols["ack"], dtype=np.int64), zero)
    flags = np.where(tcp, np.asarray(cols["tcp_flags"], dtype=np.int64) & KEY_FLAGS, zero)
    tsval = np.where(has_ts, np.asarray(cols["tsval"], dtype=np.int64), zero)
    tsecr = np.where(has_ts, np.asarray(cols["tsecr"], dtype=np.int64), zero)
    phash = np.asarray(cols["phash"], dtype=np.int64)
    if not tcp_phash:
        phash = np.where(tcp, zero, phash)
    itype = np.where(icmp, np.asarray(cols["icmp_type"], dtype=np.int64), zero)
    icode = np.where(icmp, np.asarray(cols["icmp_code"], dtype=np.int64), zero)
    iseq = np.where(icmp, np.asarray(cols["icmp_seq"], dtype=np.int64), zero)
    h = seed(n, 0x50A7_4CE0)
    h = mix(h, p)
    h = mix(h, seq)
    h = mix(h, ack)
    h = mix(h, flags | (has_ts.astype(np.int64) << 8))
    h = mix(h, (tsval << 32) | tsecr)
    h = mix(h, np.asarray(cols["payload_len"], dtype=np.int64))
    h = mix(h, phash)
    h = mix(h, (itype << 40) | (icode << 32) | (iseq & 0xFFFFFFFF))
    return h


def packet_key(
    proto: npt.NDArray[np.generic],
    cols: Mapping[str, npt.NDArray[np.generic]],
    *,
    tcp_phash: bool = True,
) -> U64:
    """`with_ip_id(signature(...), ip_id)` in four mixing rounds instead of nine.

    The same fields, packed into four 64-bit words before hashing (the bits do not overlap), so
    it tells apart exactly what the two-step key tells apart; the values differ.
    """
    n = int(np.asarray(proto).shape[0])
    p = np.asarray(proto).astype(np.uint64)
    tcp = p == 6
    icmp = (p == 1) | (p == 58)
    opts = np.asarray(cols["opts"])
    has_ts = tcp & ((opts & OPT_TS) != 0)
    u = np.uint64
    seq = np.asarray(cols["seq"]).astype(np.uint64)
    ack = np.asarray(cols["ack"]).astype(np.uint64)
    w1 = np.where(tcp, (seq << u(32)) | ack, u(0))
    tsv = np.asarray(cols["tsval"]).astype(np.uint64)
    tse = np.asarray(cols["tsecr"]).astype(np.uint64)
    w2 = np.where(has_ts, (tsv << u(32)) | tse, u(0))
    flags = np.asarray(cols["tcp_flags"]).astype(np.uint64) & u(KEY_FLAGS)
    plen = np.asarray(cols["payload_len"]).astype(np.int64).view(np.uint64) & u(0xFFFFFF)
    ip_id = (np.asarray(cols["ip_id"]).astype(np.int64) + 1).view(np.uint64) & u(0x1FFFF)
    w3 = p | (np.where(tcp, flags, u(0)) << u(8)) | (has_ts.astype(np.uint64) << u(14))
    w3 |= (plen << u(15)) | (ip_id << u(39))
    phash = np.asarray(cols["phash"]).astype(np.uint64)
    if not tcp_phash:
        phash = np.where(tcp, u(0), phash)
    itype = np.asarray(cols["icmp_type"]).astype(np.int64).view(np.uint64) & u(0xFF)
    icode = np.asarray(cols["icmp_code"]).astype(np.int64).view(np.uint64) & u(0xFF)
    iseq = np.asarray(cols["icmp_seq"]).astype(np.int64).view(np.uint64) & u(0xFFFF)
    w4 = (phash << u(32)) | np.where(icmp, (itype << u(24)) | (icode << u(16)) | iseq, u(0))
    h = seed(n, 0x50A7_4CE1)
    for w in (w1, w2, w3, w4):
        h = _mix_u64(h, w)
    return h


def _mix_u64(h: U64, x: U64) -> U64:
    with np.errstate(over="ignore"):
        v = h ^ x
        v *= _M1
        v ^= v >> _S31
        v *= _M2
        v ^= v >> _S29
    return v


def with_ip_id(key: U64, ip_id: npt.NDArray[np.generic]) -> U64:
    """The signature refined by the IPv4 ID: the tie-breaker between two sends of one segment.

    IPv6 rows (ip_id -1) all get the same refinement, so it changes nothing for them.
    """
    return mix(key, np.asarray(ip_id, dtype=np.int64))

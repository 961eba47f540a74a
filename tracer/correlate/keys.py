"""NAT-invariant packet signatures, computed for a whole column batch at once.

A signature is a uint64 hash of what netfilter NAT, routing and overlays leave alone
(reference/correlation.md section 1): TCP seq, ack, the six classic flags, payload length,
TSval/TSecr when the option is present and the payload hash; UDP length and payload hash; ICMP
type, code, sequence and payload hash. It never includes addresses, ports, TTL, checksums or the
ICMP echo identifier. Pure numpy; no Python loop per packet. `kernels.packet_key` computes the
same key in one compiled pass (this one is its reference).
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
    plen = np.asarray(payload_len)  # compared in their own (signed) dtype: no int64 copies
    need = np.minimum(plen, PHASH_BYTES)
    return (plen > 0) & (np.asarray(pcap_len) < need)


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
    it tells apart exactly what the two-step key tells apart; the values differ. Each word is
    built and mixed in place: on millions of rows every temporary array costs as much as the
    arithmetic.
    """
    p = np.asarray(proto)
    n = int(p.shape[0])
    u = np.uint64
    tcp = p == 6
    other = ~tcp
    icmp = (p == 1) | (p == 58)
    has_ts = tcp & ((np.asarray(cols["opts"]) & OPT_TS) != 0)
    h = seed(n, 0x50A7_4CE1)
    # w1: seq and ack (TCP only)
    w = _u64(cols["seq"])
    w <<= u(32)
    w |= _u64(cols["ack"])
    w[other] = 0
    _mix_into(h, w)
    # w2: TSval and TSecr where the option is present
    w = _u64(cols["tsval"])
    w <<= u(32)
    w |= _u64(cols["tsecr"])
    w[~has_ts] = 0
    _mix_into(h, w)
    # w3: proto | flags << 8 | has_ts << 14 | payload length << 15 | (IP ID + 1) << 39
    w = _u64(cols["tcp_flags"])
    w &= u(KEY_FLAGS)
    w[other] = 0
    w <<= u(8)
    w |= _u64(p)
    w |= has_ts.astype(np.uint64) << u(14)
    x = _wrapped(cols["payload_len"])
    x &= u(0xFFFFFF)
    x <<= u(15)
    w |= x
    x = np.asarray(cols["ip_id"]).astype(np.int64)
    x += 1
    y = x.view(np.uint64)
    y &= u(0x1FFFF)
    y <<= u(39)
    w |= y
    _mix_into(h, w)
    # w4: payload hash << 32 | ICMP type, code and sequence
    w = _u64(cols["phash"])
    if not tcp_phash:
        w[tcp] = 0
    w <<= u(32)
    x = _wrapped(cols["icmp_type"])
    x &= u(0xFF)
    x <<= u(24)
    y = _wrapped(cols["icmp_code"])
    y &= u(0xFF)
    y <<= u(16)
    x |= y
    y = _wrapped(cols["icmp_seq"])
    y &= u(0xFFFF)
    x |= y
    x[~icmp] = 0
    w |= x
    _mix_into(h, w)
    return h


def _u64(col: npt.NDArray[np.generic]) -> U64:
    """A fresh uint64 copy of a column (negative values wrap, as a C cast does)."""
    return np.asarray(col).astype(np.uint64)


def _wrapped(col: npt.NDArray[np.generic]) -> U64:
    """A fresh copy of a signed column as int64, seen as uint64 (-1 becomes all ones)."""
    return np.asarray(col).astype(np.int64).view(np.uint64)


def _mix_into(h: U64, x: U64) -> None:
    """Fold `x` into `h` in place (splitmix64 finaliser), `x` (consumed) as scratch space."""
    with np.errstate(over="ignore"):
        h ^= x
        h *= _M1
        np.right_shift(h, _S31, out=x)
        h ^= x
        h *= _M2
        np.right_shift(h, _S29, out=x)
        h ^= x


def with_ip_id(key: U64, ip_id: npt.NDArray[np.generic]) -> U64:
    """The signature refined by the IPv4 ID: the tie-breaker between two sends of one segment.

    IPv6 rows (ip_id -1) all get the same refinement, so it changes nothing for them.
    """
    return mix(key, np.asarray(ip_id, dtype=np.int64))

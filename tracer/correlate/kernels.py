"""The correlator's per-row kernels, compiled where the extension is built, numpy otherwise.

Each function here has two implementations that give identical results: the compiled one in
`_native.c` (one pass per row, GIL released) and the numpy one below, which is the reference
and the fallback for an install without a C compiler. tests/correlate/test_kernels.py holds
them to each other. `packed_order`, the stable sort both use, is numpy only. Pure: arrays in,
arrays out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import ModuleType
from typing import Any, Literal, overload

import numpy as np
import numpy.typing as npt

from tracer import compiled

I64 = npt.NDArray[np.int64]
U64 = npt.NDArray[np.uint64]
Bools = npt.NDArray[np.bool_]


native: ModuleType | None = compiled.load("tracer.correlate._native")
# Default of every `use` argument: the compiled kernels when they are built (read at call time,
# so a test can set `native` to None to run the numpy references), else the numpy reference.
AUTO: Any = object()


def _pick(use: Any) -> Any:
    return native if use is AUTO else use


# The dtypes the compiled packet_key reads, in its argument order (the reader's column dtypes).
KEY_COLUMNS: tuple[tuple[str, str], ...] = (
    ("seq", "u4"),
    ("ack", "u4"),
    ("tsval", "u4"),
    ("tsecr", "u4"),
    ("tcp_flags", "u1"),
    ("opts", "u1"),
    ("payload_len", "i4"),
    ("ip_id", "i4"),
    ("phash", "u4"),
    ("icmp_type", "i2"),
    ("icmp_code", "i2"),
    ("icmp_seq", "i4"),
)


def _as(a: Any, dtype: str) -> npt.NDArray[Any]:
    """A contiguous array of `dtype`, without a copy when it already is one (values that do
    not fit wrap as a C cast does; the reader's columns always fit)."""
    arr = np.asarray(a)
    if arr.dtype == np.dtype(dtype) and arr.flags.c_contiguous:
        return arr
    return np.ascontiguousarray(arr.astype(dtype))


def packet_key(
    proto: npt.NDArray[Any],
    cols: Mapping[str, npt.NDArray[Any]],
    *,
    tcp_phash: bool = True,
    use: Any = AUTO,
) -> U64:
    """`keys.packet_key`: the NAT-invariant key of every row refined by the IPv4 ID."""
    use = _pick(use)
    if use is None:
        from tracer.correlate.keys import packet_key as reference

        return reference(proto, cols, tcp_phash=tcp_phash)
    n = int(np.asarray(proto).shape[0])
    out = np.empty(n, dtype=np.uint64)
    use.packet_key(
        _as(proto, "u1"), *(_as(cols[name], dt) for name, dt in KEY_COLUMNS), tcp_phash, out
    )
    return out


def flow_keys(
    point: int, cols: Mapping[str, npt.NDArray[Any]], lut: npt.NDArray[Any], *, use: Any = AUTO
) -> tuple[I64, U64]:
    """Per row of one point: its source endpoint and the key of its flow.

    An endpoint is the global address id (`lut` maps the point's ids to those; its last entry,
    -1, stands for none) << 18 | (port + 1), the port being the echo identifier for ICMP. The
    flow key hashes the point, the protocol and both endpoints in either order, so both
    directions of a flow at a point share it.
    """
    use = _pick(use)
    proto = _as(cols["proto"], "u1")
    n = int(proto.shape[0])
    if use is not None:
        ep_s = np.empty(n, dtype=np.int64)
        fkey = np.empty(n, dtype=np.uint64)
        ok = use.flow_keys(
            point,
            proto,
            *(_as(cols[c], "i4") for c in ("src", "dst", "sport", "dport", "icmp_id")),
            _as(lut, "i4"),
            ep_s,
            fkey,
        )
        if not ok:
            raise IndexError("address id out of range")
        return ep_s, fkey
    icmp = (proto <= 1) | (proto == 58)
    icmp_id = np.asarray(cols["icmp_id"])
    port_s = np.where(icmp, icmp_id, np.asarray(cols["sport"])).astype(np.int64)
    port_d = np.where(icmp, icmp_id, np.asarray(cols["dport"])).astype(np.int64)
    ep_s = (lut[np.asarray(cols["src"])].astype(np.int64) << 18) | ((port_s + 1) & 0x3FFFF)
    ep_d = (lut[np.asarray(cols["dst"])].astype(np.int64) << 18) | ((port_d + 1) & 0x3FFFF)
    fkey = mix_rows(
        0xF10,
        (point * 256 + proto.astype(np.int64), np.minimum(ep_s, ep_d), np.maximum(ep_s, ep_d)),
        use=None,
    )
    return ep_s, fkey


def group_min(groups: I64, values: npt.NDArray[Any], n: int, *, use: Any = AUTO) -> I64:
    """Per group 0..n-1, the smallest of its values (int64 max where a group has none)."""
    use = _pick(use)
    out = np.full(n, np.iinfo(np.int64).max, dtype=np.int64)
    _group_reduce(groups, values, out, 0, use)
    return out


def group_max(groups: I64, values: npt.NDArray[Any], n: int, *, use: Any = AUTO) -> I64:
    """Per group 0..n-1, the largest of its values (int64 min where a group has none)."""
    use = _pick(use)
    out = np.full(n, np.iinfo(np.int64).min, dtype=np.int64)
    _group_reduce(groups, values, out, 1, use)
    return out


def group_or(groups: I64, values: npt.NDArray[Any], n: int, *, use: Any = AUTO) -> I64:
    """Per group 0..n-1, the bitwise or of its values (0 where a group has none)."""
    use = _pick(use)
    out = np.zeros(n, dtype=np.int64)
    _group_reduce(groups, values, out, 2, use)
    return out


def group_single(groups: I64, values: npt.NDArray[Any], n: int, *, use: Any = AUTO) -> I64:
    """Per group 0..n-1, its one value among those >= 0 (values < 0 are skipped); -1 where it
    has none or several different ones."""
    use = _pick(use)
    if use is not None:
        out = np.full(n, -1, dtype=np.int64)
        _group_reduce(groups, values, out, 3, use)
        out[out == -2] = -1
        return out
    v = np.asarray(values)
    keep = v >= 0
    g = np.asarray(groups)[keep]
    lo = group_min(g, v[keep], n, use=None)
    hi = group_max(g, v[keep], n, use=None)
    return np.where(lo == hi, lo, -1)


def first_index(groups: I64, n: int, *, use: Any = AUTO) -> I64:
    """For each group id 0..n-1, the smallest row index that has it (-1 if none)."""
    use = _pick(use)
    out = group_min(groups, np.arange(groups.shape[0], dtype=np.int64), n, use=use)
    out[out == np.iinfo(np.int64).max] = -1
    return out


def mix_rows(seed: int, columns: Sequence[npt.NDArray[Any]], *, use: Any = AUTO) -> U64:
    """`keys.mix` folded over several columns in turn, from a seed: one hash per row."""
    use = _pick(use)
    from tracer.correlate.keys import mix
    from tracer.correlate.keys import seed as seeded

    n = int(np.asarray(columns[0]).shape[0])
    if use is None:
        h = seeded(n, seed)
        for c in columns:
            h = mix(h, c)
        return h
    out = np.empty(n, dtype=np.uint64)
    use.mix_rows(seed, [_as(c, "i8") for c in columns], out)
    return out


def _group_reduce(groups: I64, values: npt.NDArray[Any], out: I64, op: int, use: Any) -> None:
    g = _as(groups, "i8")
    v = _as(values, "i8")
    if v.shape != g.shape:
        v = np.ascontiguousarray(np.broadcast_to(v, g.shape))
    if use is not None:
        if not use.group_reduce(g, v, out, op):
            raise IndexError("group id out of range")
        return
    (np.minimum, np.maximum, np.bitwise_or)[op].at(out, g, v)  # op 3: compiled only


@overload
def packed_order(key: npt.NDArray[Any]) -> I64: ...
@overload
def packed_order(key: npt.NDArray[Any], *, with_sorted: Literal[True]) -> tuple[I64, U64]: ...
def packed_order(key: npt.NDArray[Any], *, with_sorted: bool = False) -> Any:
    """The permutation that sorts rows by `key` (64-bit), ties in row order: a stable argsort.

    numpy sorts plain 64-bit values about ten times faster than it argsorts them, so the row
    index is packed into the key's low bits and the values are sorted. Rows whose keys share
    the remaining high bits but differ below them (rare: a 40-bit collision) are put right
    afterwards with an exact sort of just those rows. `with_sorted` also returns the keys in
    that order (as uint64), which the collision check has at hand anyway.
    """
    n = int(key.shape[0])
    k = np.ascontiguousarray(key).view(np.uint64) if key.dtype != np.uint64 else key
    if n < 2:
        order = np.arange(n, dtype=np.int64)
        return (order, k[order]) if with_sorted else order
    ib = np.uint64(max(1, (n - 1).bit_length()))
    low = (np.uint64(1) << ib) - np.uint64(1)
    idx = np.arange(n, dtype=np.uint64)
    if int(k.max()) >> (64 - int(ib)) == 0:
        # Small keys (ids, positions): key and row index fit side by side, exactly.
        packed = (k << ib) | idx
        del idx
        packed.sort()
        if with_sorted:
            sk = packed >> ib
            packed &= low
            return packed.view(np.int64), sk
        packed &= low
        return packed.view(np.int64)  # below 2**63: the same values, no copy
    packed = (k >> ib) << ib
    packed |= idx
    del idx
    packed.sort()
    order = (packed & low).view(np.int64)
    sk = k[order]
    packed >>= ib  # the high bits each row was sorted on
    same_top = packed[1:] == packed[:-1]
    del packed
    bad = same_top & (sk[1:] != sk[:-1])
    if bad.any():
        run = np.cumsum(np.r_[True, ~same_top]) - 1
        bad_run = np.zeros(int(run[-1]) + 1, dtype=bool)
        bad_run[run[1:][bad]] = True
        rows = np.flatnonzero(bad_run[run])
        sub = np.lexsort((order[rows], sk[rows], run[rows]))
        order[rows] = order[rows][sub]
        sk[rows] = sk[rows][sub]
    return (order, sk) if with_sorted else order


def group_order(groups: I64, n: int, *, use: Any = AUTO) -> I64:
    """The stable permutation that sorts rows by their group id 0..n-1."""
    use = _pick(use)
    g = _as(groups, "i8")
    if use is None:
        return packed_order(g)
    out = np.empty(g.shape[0], dtype=np.int64)
    if not use.counting_order(g, n, out):
        raise IndexError("group id out of range")
    return out


def first_seen(ids: I64, n: int, *, use: Any = AUTO) -> tuple[I64, I64]:
    """Renumber ids 0..n-1 in the order the rows first show them.

    Returns (new id per row, new id of each old id, -1 for one no row has). Numbered so, the
    ids of rows close together are close together: every later gather or reduction by id walks
    memory in order instead of jumping about (on millions of rows, the cache misses cost more
    than the arithmetic).
    """
    use = _pick(use)
    g = _as(ids, "i8")
    if use is not None:
        out = np.empty(g.shape[0], dtype=np.int64)
        mapping = np.empty(n, dtype=np.int64)
        if not use.first_seen(g, out, mapping):
            raise IndexError("id out of range")
        return out, mapping
    first = group_min(g, np.arange(g.shape[0], dtype=np.int64), n, use=None)
    present = np.flatnonzero(first != np.iinfo(np.int64).max)
    mapping = np.full(n, -1, dtype=np.int64)
    mapping[present[np.argsort(first[present], kind="stable")]] = np.arange(present.shape[0])
    return mapping[g], mapping


# Distinct keys up to which `dense` tries a hash table (16 MB of slots at most); beyond that a
# sort of all rows is faster than the table's cache misses.
DENSE_TABLE_LIMIT = 1 << 20


def dense(values: npt.NDArray[Any], *, ordered: bool = True, use: Any = AUTO) -> tuple[I64, int]:
    """Renumber 64-bit ids to 0..k-1: in sorted order of the ids as unsigned, or (`ordered`
    False) in the order the rows first show them."""
    use = _pick(use)
    v = np.ascontiguousarray(values)
    n = int(v.shape[0])
    if n == 0:
        return np.zeros(0, np.int64), 0
    keys = v.view(np.uint64) if v.dtype.itemsize == 8 else v.astype(np.int64).view(np.uint64)
    if use is not None:
        out = np.empty(n, dtype=np.int64)
        k = int(use.dense_few(keys, min(n, DENSE_TABLE_LIMIT), ordered, out))
        if k >= 0:
            return out, k
        del out
    o, sv = packed_order(keys, with_sorted=True)
    new = np.empty(n, dtype=bool)
    new[0] = True
    np.not_equal(sv[1:], sv[:-1], out=new[1:])
    del sv
    ids = np.cumsum(new) - 1
    inv = np.empty(n, dtype=np.int64)
    inv[o] = ids
    k = int(ids[-1]) + 1
    del ids, o
    if not ordered:
        inv, _ = first_seen(inv, k, use=None)
    return inv, k


def sends(
    order: I64,
    s_key: U64,
    pidx: I64,
    t: I64,
    iface: npt.NDArray[Any],
    direction: npt.NDArray[Any],
    window: int,
    *,
    use: Any = AUTO,
) -> tuple[I64, int, Bools, Bools, Bools]:
    """Split rows sorted by (key, point, time) into sends and number their journeys.

    `order` sorts the rows so, `s_key` is the key in that order; `pidx`, `t`, `iface` and
    `direction` are in row order. At one point a new send starts after a gap of more than
    `window` ns; the k-th send of a key at one point pairs with the k-th at every other (one
    journey). A send showing the same interface and direction twice holds two packets with
    identical bytes: they are split by occurrence, the m-th with the m-th, and marked ambiguous.

    Returns (journey per row, journey count, ambiguous per journey, lone per row: its key is
    seen at one point only, repeated per sorted position: its key was sent more than once).
    """
    use = _pick(use)
    n = int(order.shape[0])
    p = np.asarray(pidx)
    # The compiled pass finds each row's point from the point boundaries (no gather of the
    # points): it needs the rows numbered point by point, as the correlator's are.
    if use is not None and n and not bool((p[1:] < p[:-1]).any()):
        bounds = np.searchsorted(p, np.arange(int(p[-1]) + 2)).astype(np.int64)
        bounds[0] = 0
        iface_a = np.asarray(iface).astype(np.int64)
        vantage = np.where(
            iface_a >= 0, ((iface_a + 1) & 0x3FFFFF) * 4 + (np.asarray(direction) & 3), -1
        ).astype(np.int32)
        del iface_a
        kk = np.empty(n, dtype=np.int64)
        jamb = np.zeros(n, dtype=np.uint8)
        lone_s = np.empty(n, dtype=np.uint8)
        rep = np.empty(n, dtype=np.uint8)
        order = _as(order, "i8")
        t_sorted = _as(np.asarray(t)[order], "i8")
        v_sorted = vantage[order]
        del vantage
        n_j, _ = use.sends(
            _as(s_key, "u8"), order, bounds, t_sorted, v_sorted, int(window), kk, jamb, lone_s, rep
        )
        del t_sorted, v_sorted
        jid = np.empty(n, dtype=np.int64)
        jid[order] = kk
        del kk
        lone = np.zeros(n, dtype=bool)
        lone[order[lone_s.view(bool)]] = True
        return jid, int(n_j), jamb[:n_j].view(bool), lone, rep.view(bool)
    return _sends_numpy(order, s_key, pidx, t, iface, direction, window)


def _sends_numpy(
    order: I64,
    s_key: U64,
    pidx: I64,
    t: I64,
    iface: npt.NDArray[Any],
    direction: npt.NDArray[Any],
    window: int,
) -> tuple[I64, int, Bools, Bools, Bools]:
    n = int(order.shape[0])
    if n == 0:
        z = np.zeros(0, dtype=bool)
        return np.zeros(0, np.int64), 0, z, z, z
    s_pidx = pidx[order]
    s_t = t[order]
    new_key = np.ones(n, dtype=bool)
    new_key[1:] = s_key[1:] != s_key[:-1]
    new_pt = new_key.copy()
    new_pt[1:] |= s_pidx[1:] != s_pidx[:-1]
    first = np.flatnonzero(new_key)
    last = np.r_[first[1:] - 1, n - 1]
    key_id = np.cumsum(new_key) - 1
    lone = np.zeros(n, dtype=bool)
    lone[order] = (s_pidx[first] == s_pidx[last])[key_id]
    gap = np.zeros(n, dtype=bool)
    gap[1:] = (s_t[1:] - s_t[:-1]) > window
    cs = np.cumsum(new_pt | gap)
    pt_start = np.flatnonzero(new_pt)
    k = cs - cs[pt_start][np.cumsum(new_pt) - 1]  # ordinal of the send at this point
    kmax = np.maximum.reduceat(k, first)
    jbase = np.zeros(first.shape[0], dtype=np.int64)
    jbase[1:] = np.cumsum(kmax + 1)[:-1]
    jid_sorted = jbase[key_id] + k
    n_j = int(jbase[-1] + kmax[-1] + 1)
    ambiguous_key = kmax > 0
    jamb = np.zeros(n_j, dtype=bool)
    jamb[jid_sorted] = ambiguous_key[key_id]
    m = _occurrence(cs - 1, iface[order], direction[order])
    if m is not None:
        jamb[jid_sorted[m > 0]] = True
        row_amb = jamb[jid_sorted]
        jid_sorted, n_j = dense(jid_sorted * (int(m.max()) + 1) + m, use=None)
        jamb = np.zeros(n_j, dtype=bool)
        jamb[jid_sorted] = row_amb
    jid = np.empty(n, dtype=np.int64)
    jid[order] = jid_sorted
    return jid, n_j, jamb, lone, ambiguous_key[key_id]


def _occurrence(cluster: I64, iface: npt.NDArray[Any], direction: npt.NDArray[Any]) -> I64 | None:
    """Per row: how many earlier rows of its cluster had the same interface and direction.

    None when no cluster repeats one (the usual case), so the caller can skip the split.
    """
    n = cluster.shape[0]
    if n < 2:
        return None
    size = np.bincount(cluster)
    # Only a known interface can repeat: a capture without interface ids (plain pcap of
    # `-i any` with SLL v1) shows every sighting on "no interface".
    iface = iface.astype(np.int64)
    multi = np.flatnonzero((size[cluster] > 1) & (iface >= 0))
    if multi.shape[0] == 0:
        return None
    sub = (
        cluster[multi] * (1 << 24)
        + ((iface[multi] + 1) & 0x3FFFFF) * 4
        + (direction[multi].astype(np.int64) & 3)
    )
    o = np.argsort(sub, kind="stable")
    ss = sub[o]
    new = np.r_[True, ss[1:] != ss[:-1]]
    if new.all():
        return None
    starts = np.flatnonzero(new)
    ordinal = np.arange(o.shape[0]) - starts[np.cumsum(new) - 1]
    m = np.zeros(n, dtype=np.int64)
    m[multi[o]] = ordinal
    return m

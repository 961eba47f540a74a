"""Gathering: the IP rows of every point, in time order within the point, as one set of rows.

Only where each row comes from is copied; a column of all rows is gathered when a step asks
for it (`Columns`), and addresses are merged into one table. Frames that cannot be matched are
left out here and said so. No matching, no file reading.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tracer.correlate.table import I64, Bools, Col, PointFrames, read_rows
from tracer.correlate.warnings import frame_warnings
from tracer.errors import InputError
from tracer.pcap.columns import OPT_FRAGMENT, OPT_TRUNCATED


class Columns(MutableMapping[str, Col]):
    """The kept columns of every point's matched rows, gathered into one array on demand.

    Copying all of them up front costs about as much memory as the captures themselves; here a
    column is gathered when a step asks for it, and only the ones most steps use are kept
    (the rest, read by one or two steps, are gathered again rather than held). Assigning a
    column (the ISN pass rewrites seq/ack) replaces it for good.
    """

    def __init__(self, sources: list[tuple[Mapping[str, Any], I64, I64]], n: int) -> None:
        self.sources = sources  # per point: (its columns, rows in time order, address lut)
        self._n = n
        self._sel: I64 | None = None  # rows left after filtering, None for all
        self._cache: dict[str, Col] = {}
        self._replaced: set[str] = set()  # columns assigned here (not the points' own)

    def __getitem__(self, name: str) -> Col:
        hit = self._cache.get(name)
        if hit is not None:
            return hit
        if name not in KEEP:
            raise KeyError(name)
        parts = []
        for c, idx, lut in self.sources:
            v = np.asarray(c[name])[idx]
            parts.append(lut[v] if name in ("src", "dst") else v)  # -1 indexes the trailing -1
        out: Col = np.concatenate(parts) if parts else np.zeros(0, np.int64)
        del parts
        if self._sel is not None:
            out = out[self._sel]
        if name in _CACHED:
            self._cache[name] = out
        return out

    def __setitem__(self, name: str, value: Col) -> None:
        self._cache[name] = value
        self._replaced.add(name)

    def __delitem__(self, name: str) -> None:
        del self._cache[name]

    def __iter__(self) -> Iterator[str]:
        return iter(KEEP)

    def __len__(self) -> int:
        return len(KEEP)

    def derived(self, fn: Callable[[Mapping[str, Any]], Col], *, replaced: Sequence[str]) -> Col:
        """`fn` of every point's own columns, gathered like a column (one array in row order).

        Computing on each point's columns where they lie saves gathering each input column; it
        is only right while none of `replaced` has been assigned here, else `fn` of the
        gathered columns.
        """
        if any(name in self._replaced for name in replaced):
            return fn(self)
        if not self.sources:
            return np.zeros(0, np.int64)
        return self.per_point(lambda _p, c, _lut: (fn(c),))[0]

    def at(self, rows: I64, *names: str) -> list[Col]:
        """Columns `names` at some rows only (from the cached or replaced copy where there is
        one, else from the points' own columns: no full gather)."""
        frames = rows if self._sel is None else self._sel[rows]
        bounds = np.cumsum([0] + [idx.shape[0] for _, idx, _ in self.sources])
        point = np.searchsorted(bounds, frames, side="right") - 1
        frame = np.empty_like(frames)
        for p, (_, idx, _) in enumerate(self.sources):
            here = np.flatnonzero(point == p)
            frame[here] = idx[frames[here] - bounds[p]]
        sources = [(c, lut) for c, _, lut in self.sources]
        return [
            self._cache[name][rows]
            if name in self._cache
            else read_rows(sources, point, frame, name)[0]
            for name in names
        ]

    def frame_rows(self) -> I64:
        """Each row's frame index in its point's capture."""
        parts = [idx for _, idx, _ in self.sources]
        out: I64 = np.concatenate(parts) if parts else np.zeros(0, np.int64)
        return out if self._sel is None else out[self._sel]

    def forget(self, *names: str) -> None:
        """Drop the gathered copies of these columns (no later step reads them)."""
        for name in names:
            if name not in self._replaced:
                self._cache.pop(name, None)

    def per_point(self, fn: Callable[[int, Mapping[str, Any], Col], tuple[Col, ...]]) -> list[Col]:
        """`fn(point, its columns, its address lut)` for every point, each of its results
        gathered like a column (computed where the columns lie: no input column is gathered)."""
        parts: list[list[Col]] = []
        for p, (c, idx, lut) in enumerate(self.sources):
            for k, out in enumerate(fn(p, c, lut)):
                if k == len(parts):
                    parts.append([])
                parts[k].append(out[idx])
        cols: list[Col] = [np.concatenate(part) for part in parts]
        return cols if self._sel is None else [col[self._sel] for col in cols]

    def filtered(self, keep: Bools) -> Columns:
        out = Columns(self.sources, self._n)
        sel = np.flatnonzero(keep)
        out._sel = sel if self._sel is None else self._sel[sel]
        out._cache = {k: v[keep] for k, v in self._cache.items()}
        out._replaced = set(self._replaced)
        return out


@dataclass
class Rows:
    pidx: Col
    t: I64
    cols: Columns
    addresses: list[str]

    @property
    def row(self) -> I64:
        """Each row's frame index in its point's capture (rebuilt when asked for, not held)."""
        return self.cols.frame_rows()


KEEP = (
    "t_ns",
    "family",
    "proto",
    "src",
    "dst",
    "sport",
    "dport",
    "ip_id",
    "ttl",
    "seq",
    "ack",
    "tcp_flags",
    "payload_len",
    "tsval",
    "tsecr",
    "opts",
    "phash",
    "pcap_len",
    "icmp_type",
    "icmp_code",
    "icmp_id",
    "icmp_seq",
    "iface",
    "direction",
    "encap",
)
# Columns most steps read: gathered once and kept. The others are gathered when asked for.
_CACHED = frozenset(("proto", "tcp_flags", "src", "dst", "icmp_type"))


# IP protocols the correlator matches (TCP, UDP, ICMP, ICMPv6), as a lookup by protocol number.
_KNOWN_PROTO = np.isin(np.arange(256), (1, 6, 17, 58))


def _address_luts(points: Sequence[PointFrames]) -> tuple[list[str], list[Col]]:
    """One address table for all points (ids in order of first appearance) and, per point, the
    map from its own address ids to those, with a trailing -1 for "no address".

    Built with dict/map calls that run in C: a capture of many clients holds hundreds of
    thousands of addresses, where a Python loop per address costs more than the rest of the
    gathering.
    """
    tables = [pf.frames.addresses for pf in points]
    keys = [pf.frames.address_keys for pf in points]
    if all(k is not None and k.shape[0] == len(t) for k, t in zip(keys, tables, strict=True)):
        return _address_luts_by_number(tables, [k for k in keys if k is not None])
    ids: dict[str, int] = {}
    luts: list[Col] = []
    for tab in tables:
        # Addresses not seen at an earlier point get the next ids, in this point's order.
        new = list(dict.fromkeys(a for a in tab if a not in ids) if ids else dict.fromkeys(tab))
        ids.update(zip(new, range(len(ids), len(ids) + len(new)), strict=True))
        lut = np.empty(len(tab) + 1, dtype=np.int32)
        lut[:-1] = np.fromiter(map(ids.__getitem__, tab), dtype=np.int64, count=len(tab))
        lut[-1] = -1
        luts.append(lut)
    merged = list(ids)
    return merged, luts


def _address_luts_by_number(
    tables: Sequence[Sequence[str]], keys: Sequence[I64]
) -> tuple[list[str], list[Col]]:
    """`_address_luts` from the reader's numeric IPv4 keys: IPv4 addresses first, in numeric
    order (one sort of the keys, no string hashing), then IPv6 addresses by text."""
    all_keys = np.concatenate(keys) if keys else np.zeros(0, np.int64)
    offsets = np.cumsum([0] + [len(t) for t in tables])
    v4_at = np.flatnonzero(all_keys >= 0)
    unique, first = np.unique(all_keys[v4_at], return_index=True)
    texts = list(itertools.chain.from_iterable(tables))
    merged = [texts[i] for i in v4_at[first].tolist()]
    v6: dict[str, int] = {}
    luts: list[Col] = []
    for t, (tab, k) in enumerate(zip(tables, keys, strict=True)):
        lut = np.empty(len(tab) + 1, dtype=np.int32)
        is_v4 = k >= 0
        lut[:-1][is_v4] = np.searchsorted(unique, k[is_v4])
        for i in np.flatnonzero(~is_v4).tolist():
            lut[i] = v6.setdefault(texts[int(offsets[t]) + i], len(unique) + len(v6))
        lut[-1] = -1
        luts.append(lut)
    merged.extend(v6)
    return merged, luts


def gather(points: Sequence[PointFrames], warnings: list[str], notes: list[str]) -> Rows:
    addresses, luts = _address_luts(points)
    sources: list[tuple[Mapping[str, Any], I64, I64]] = []
    pidx_parts: list[Col] = []
    # Point indexes are small: int16 per row (arithmetic on them casts to int64 first).
    pidx_dtype = np.int16 if len(points) < 1 << 15 else np.int64
    t_parts: list[I64] = []
    for pi, pf in enumerate(points):
        c = pf.frames.columns
        name = pf.point.name
        for col in ("family", "proto", "opts", *KEEP, "t_ns"):
            if col not in c:
                raise InputError(f"point {name}: frames lack column {col!r}")
        fam = np.asarray(c["family"])
        proto = np.asarray(c["proto"])
        opts = np.asarray(c["opts"])
        ip = fam != 0
        known = ip & _KNOWN_PROTO[proto]
        broken = known & ((opts & (OPT_TRUNCATED | OPT_FRAGMENT)) != 0)
        ok = known & ~broken
        frame_warnings(name, c, ip, known, broken, warnings, notes)
        idx = np.flatnonzero(ok)
        del ip, known, broken, ok
        t = np.asarray(c["t_ns"], dtype=np.int64)[idx]
        # A capture is nearly always in time order already: sort only one that is not.
        if t.shape[0] > 1 and bool((t[1:] < t[:-1]).any()):
            order = np.argsort(t, kind="stable")
            idx = idx[order]
            t = t[order]
            del order
        sources.append((c, idx, luts[pi]))
        pidx_parts.append(np.full(idx.shape[0], pi, dtype=pidx_dtype))
        t_parts.append(t)
        del t

    def cat(v: list[I64]) -> I64:
        return np.concatenate(v) if v else np.zeros(0, np.int64)

    t_all = cat(t_parts)
    del t_parts
    return Rows(cat(pidx_parts), t_all, Columns(sources, t_all.shape[0]), addresses)

"""The correlation engine: group every frame of every point into packets and connections.

Pipeline (vectorised: numpy, and the compiled kernels of `kernels` for the passes numpy needs
many sweeps for; no Python loop per packet):
1. gather the IP rows of every point, sorted by time within the point;
2. key each row on its NAT-invariant signature refined by the IPv4 ID, and split rows with equal
   keys into sends: at one point, sightings of one send are close in time, a later send of the
   same bytes is a retransmission; the k-th send at one point pairs with the k-th at another;
3. learn connections: a flow at a point (its tuple, split at each new SYN) is linked to flows
   at other points by confident matches first (SYNs; unambiguous UDP/ICMP), then later matches
   must agree with what was learned: one that links two learned connections is split, not merged;
4. orient packets (forward = client to server), estimate clock offsets, order each packet's
   sightings in path order and each connection's packets by corrected time.
Rows no other point matched exactly get a second look (`tracer.correlate.offload`): a SYN
whose sequence numbers a firewall shifted teaches the shift, which is undone before keying
again; an offload super-segment (GSO/TSO/GRO) joins the packet of the wire segment holding
the byte its time stands for; and sends that only time tells apart (no IP ID, no TSval) are
paired again on clock-corrected time where a copy was missing at some point.
Model objects (`Connection`, `Journey`, `Observation`) are built only when asked for, one
connection at a time, so a capture of millions of frames costs arrays, not objects. Memory is
the other budget: per row the table keeps only where the row comes from and its corrected time,
working arrays are freed (and the heap trimmed) as soon as a stage is done with them, and
journeys and flows are numbered in the order rows first show them, so that gathers by id walk
memory in order.
This module reads no files and prints nothing.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from tracer.correlate import clocks as clk
from tracer.correlate import kernels
from tracer.correlate.kernels import packed_order
from tracer.correlate.keys import partial_hash
from tracer.correlate.offload import (
    SeqShifts,
    SuperJoins,
    learn_isn_shifts,
    regroup_by_time,
    signed_shift,
    super_segment_joins,
)
from tracer.correlate.scope import (
    ambiguous_keys,
    encrypted_tunnel_rows,
    link_scope_rows,
    repeated_rows,
    same_points,
    scoped_keys,
    split_by_domain,
)
from tracer.errors import InputError
from tracer.memory import give_back
from tracer.model import (
    CapturePoint,
    ClockEstimate,
    Connection,
    Direction,
    Endpoint,
    Journey,
    Observation,
    Translation,
    Tuple5,
    translation_kind,
)
from tracer.pcap.columns import (
    DIR_IN,
    DIR_OUT,
    OPT_FRAGMENT,
    OPT_SUPER,
    OPT_TRUNCATED,
    TH_ACK,
    TH_FIN,
    TH_RST,
    TH_SYN,
    Frames,
)

I64 = npt.NDArray[np.int64]
Bools = npt.NDArray[np.bool_]
Col = npt.NDArray[Any]  # an integer column in the dtype the reader gave it

# Sightings of one send at one point are this close; a retransmission comes later (Linux's
# minimum RTO is 200 ms, a tail-loss probe at least 10 ms, and each gets a new IP ID and TSval).
SAME_SEND_WINDOW_NS = 10_000_000
# Sends of one segment that nothing but time tells apart are paired again on corrected time
# where one packet's sightings spread wider than this: an RTO is at least 200 ms (Linux's
# TCP_RTO_MIN), a DNS retry seconds, while one packet crosses a cluster in far less.
RESEND_GAP_NS = 100_000_000

# Path order of roles for a forward packet (a reply crosses them backwards). Only the two ends
# are fixed by role: the client sends, the server receives. Everything between them (nodes, an
# ingress pod, a capture on a shared underlay bridge) is ordered by time, because a role says
# nothing about where a point sits on one particular packet's way.
ROLE_RANK: Mapping[str, int] = {
    "external": 0,
    "client": 0,
    "ingress": 1,
    "node": 1,
    "dns": 1,
    "server": 2,
}
PROTO_NAMES: Mapping[int, str] = {6: "tcp", 17: "udp", 1: "icmp", 58: "icmpv6"}
_ICMP_ECHO_REQUEST = (8, 128)


@dataclass(frozen=True)
class PointFrames:
    """One capture point's frames, with the names of its interfaces (iface id -> name)."""

    point: CapturePoint
    frames: Frames
    ifnames: Mapping[int, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Table:
    """Every matched row, sorted by connection, packet and path order (internal).

    Per row it holds only where the row comes from (point, frame) and its corrected time; every
    other per-row value is read from the point's own columns when asked for (`column`, or the
    properties below for all rows), so the table costs a few bytes a row, not a copy of the
    captures' columns.
    """

    # per row (sorted)
    pidx: Col
    row: Col
    tc: I64
    # per journey (ordered), rows [jstart[j], jstart[j + 1])
    jstart: I64
    jforward: Bools
    jretrans: I64
    # per connection, journeys [cstart[c], cstart[c + 1])
    cstart: I64
    cstart_ns: I64
    cpoints: I64
    addresses: tuple[str, ...]
    # per point: its columns and the map from its address ids to `addresses` (-1 at the end)
    sources: tuple[tuple[Mapping[str, Any], Col], ...] = ()
    # per row (sorted): 0, or 1/2 for a super-segment matched by sequence range whose time is
    # that of its first/last byte; None when the capture had none
    offload: npt.NDArray[np.int8] | None = None

    def column(self, name: str, rows: slice | I64 | None = None) -> Col:
        """Column `name` for the table's rows `rows` (all when None), from the points' columns.

        Besides the reader's column names: "t" (capture time), "plen" (payload length), "flags"
        (TCP flags); "sport"/"dport" are the ICMP echo identifier for ICMP rows, and "src"/"dst"
        index `addresses`.
        """
        return self.columns((name,), rows)[name]

    def columns(self, names: Sequence[str], rows: slice | I64 | None = None) -> dict[str, Col]:
        """`column` of several names at once: the rows' points are looked up once for all."""
        pidx = self.pidx if rows is None else self.pidx[rows]
        frow = self.row if rows is None else self.row[rows]
        wanted: dict[str, None] = {}
        for name in names:
            if name in ("sport", "dport"):
                wanted.update(dict.fromkeys(("proto", name, "icmp_id")))
            else:
                wanted[_TABLE_NAMES.get(name, name)] = None
        read = dict(zip(wanted, _read_rows(self.sources, pidx, frow, *wanted), strict=True))
        out: dict[str, Col] = {}
        for name in names:
            if name in ("sport", "dport"):
                proto, ports, icmp_id = read["proto"], read[name], read["icmp_id"]
                icmp = (proto == 1) | (proto == 58)
                out[name] = np.where(icmp, icmp_id, ports) if icmp.any() else ports
            else:
                out[name] = read[_TABLE_NAMES.get(name, name)]
        return out

    src = property(lambda self: self.column("src"))
    dst = property(lambda self: self.column("dst"))
    sport = property(lambda self: self.column("sport"))
    dport = property(lambda self: self.column("dport"))
    proto = property(lambda self: self.column("proto"))
    plen = property(lambda self: self.column("plen"))
    flags = property(lambda self: self.column("flags"))


# Table column names that differ from the reader's.
_TABLE_NAMES: Mapping[str, str] = {"t": "t_ns", "plen": "payload_len", "flags": "tcp_flags"}


def _read_rows(
    sources: Sequence[tuple[Mapping[str, Any], Col]], point: Col, frame: Col, *names: str
) -> list[Col]:
    """Columns `names` (the reader's) at rows given by their point and frame index, read from
    each point's own columns; "src"/"dst" mapped through the point's address lut."""
    where = [
        (here, frame[here]) for here in (np.flatnonzero(point == p) for p in range(len(sources)))
    ]
    out: list[Col] = []
    for name in names:
        col: Col | None = None
        for (cols, lut), (here, rows) in zip(sources, where, strict=True):
            if not here.shape[0]:
                continue
            v = np.asarray(cols[name])[rows]
            if name in ("src", "dst"):
                v = lut[v]  # -1 indexes the trailing -1
            if col is None:
                col = np.empty(point.shape[0], dtype=v.dtype)
            col[here] = v
        out.append(col if col is not None else np.zeros(point.shape[0], np.int64))
    return out


@dataclass(frozen=True)
class Correlation:
    """Everything matched across the points: connections, clock estimates, warnings.

    `connections` is built on first use (model objects for every packet); `connection(i)`
    builds just one, and `select` never needs more than that.
    """

    points: tuple[CapturePoint, ...]
    clocks: tuple[ClockEstimate, ...]
    warnings: tuple[str, ...]
    table: Table = field(repr=False, compare=False)
    point_frames: tuple[PointFrames, ...] = field(repr=False, compare=False, default=())
    offsets: Mapping[str, int] = field(default_factory=dict)  # point name -> offset_ns
    # point name -> its clock's offset as a function of time, where a drift or step was fitted
    clock_models: Mapping[str, clk.DomainClock] = field(default_factory=dict)
    # Informational messages about the captures (non-IP frames, other IP protocols): nothing a
    # person has to act on, so kept apart from `warnings`.
    notes: tuple[str, ...] = ()

    def __len__(self) -> int:
        return int(self.table.cstart.shape[0]) - 1

    @cached_property
    def connections(self) -> tuple[Connection, ...]:
        return tuple(self.connection(i) for i in range(len(self)))

    def connection(self, index: int) -> Connection:
        if not 0 <= index < len(self):
            raise IndexError(index)
        return _materialise(self, index)

    @cached_property
    def request_times(self) -> Any:
        """`listing.RequestTimes` of every connection (computed once)."""
        from tracer.correlate.listing import request_times

        return request_times(self)

    @cached_property
    def leg_ends(self) -> tuple[I64, I64]:
        """Per connection: the point index where its first forward packet was first and last
        seen (where the client side starts and where the server side ends)."""
        tb = self.table
        n_c = len(self)
        if n_c == 0:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        n_j = int(tb.jforward.shape[0])
        jconn = np.repeat(np.arange(n_c), np.diff(tb.cstart))
        big = np.iinfo(np.int64).max
        first = kernels.group_min(jconn, np.where(tb.jforward, np.arange(n_j), big), n_c)
        first = np.where(first == big, tb.cstart[:-1], first)
        return tb.pidx[tb.jstart[first]], tb.pidx[tb.jstart[first + 1] - 1]

    def corrected(self, obs: Observation) -> int:
        """An observation's time on the reference clock."""
        model = self.clock_models.get(obs.point)
        if model is not None:
            return int(model.correct(np.array([obs.t_ns], dtype=np.int64))[0])
        return obs.t_ns - self.offsets.get(obs.point, 0)

    @cached_property
    def icmp_links(self) -> Mapping[int, tuple[int, ...]]:
        """Per connection: the ICMP error connections whose errors quote one of its packets.

        An error stays a connection of its own (it has its own tuple at every point); this only
        says which request it answers, in the order the errors were first seen.
        """
        return icmp_links(self.table, self.point_frames)


# ----------------------------------------------------------------------------- gather


class _Columns(MutableMapping[str, Col]):
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
        if name not in _KEEP:
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
        return iter(_KEEP)

    def __len__(self) -> int:
        return len(_KEEP)

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
            else _read_rows(sources, point, frame, name)[0]
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

    def filtered(self, keep: Bools) -> _Columns:
        out = _Columns(self.sources, self._n)
        sel = np.flatnonzero(keep)
        out._sel = sel if self._sel is None else self._sel[sel]
        out._cache = {k: v[keep] for k, v in self._cache.items()}
        out._replaced = set(self._replaced)
        return out


@dataclass
class _Rows:
    pidx: Col
    t: I64
    cols: _Columns
    addresses: list[str]

    @property
    def row(self) -> I64:
        """Each row's frame index in its point's capture (rebuilt when asked for, not held)."""
        return self.cols.frame_rows()


_KEEP = (
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


def _gather(points: Sequence[PointFrames], warnings: list[str], notes: list[str]) -> _Rows:
    addresses, luts = _address_luts(points)
    sources: list[tuple[Mapping[str, Any], I64, I64]] = []
    pidx_parts: list[Col] = []
    # Point indexes are small: int16 per row (arithmetic on them casts to int64 first).
    pidx_dtype = np.int16 if len(points) < 1 << 15 else np.int64
    t_parts: list[I64] = []
    for pi, pf in enumerate(points):
        c = pf.frames.columns
        name = pf.point.name
        for col in ("family", "proto", "opts", *_KEEP, "t_ns"):
            if col not in c:
                raise InputError(f"point {name}: frames lack column {col!r}")
        fam = np.asarray(c["family"])
        proto = np.asarray(c["proto"])
        opts = np.asarray(c["opts"])
        n = fam.shape[0]
        ip = fam != 0
        known = ip & _KNOWN_PROTO[proto]
        broken = known & ((opts & (OPT_TRUNCATED | OPT_FRAGMENT)) != 0)
        ok = known & ~broken
        if n and not ip.any():
            warnings.append(f"point {name}: none of its {n} frames was IP")
        elif (~ip).sum():
            notes.append(f"point {name}: {int((~ip).sum())} frames were not IP")
        sealed = int((ip & encrypted_tunnel_rows(proto, c["sport"], c["dport"])).sum())
        if sealed:
            warnings.append(
                f"point {name}: {sealed} packets of an encrypted tunnel (WireGuard, IPsec ESP): "
                "their inner packets cannot be read, so the hops inside the tunnel could not be "
                "matched; the path shows each packet where it is in clear (the tunnel device)"
            )
        other = int((ip & ~known).sum())
        if other:
            notes.append(f"point {name}: {other} IP frames were not TCP, UDP or ICMP")
        if broken.any():
            warnings.append(
                f"point {name}: {int(broken.sum())} truncated or fragmented frames were not matched"
            )
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
    return _Rows(cat(pidx_parts), t_all, _Columns(sources, t_all.shape[0]), addresses)


# ICMP errors (RFC 792, RFC 4443): they quote the packet that caused them.
_ICMP_ERRORS = {1: (3, 4, 5, 11, 12), 58: (1, 2, 3, 4)}


def icmp_error_rows(proto: Col, icmp_type: Col) -> Bools:
    """Rows that are ICMP or ICMPv6 errors (they quote another packet; they are not requests)."""
    out = np.zeros(proto.shape[0], dtype=bool)
    for p, types in _ICMP_ERRORS.items():
        rows = np.flatnonzero(proto == p)  # few or none: test the types of those rows only
        if rows.shape[0]:
            out[rows] = np.isin(icmp_type[rows], types)
    return out


def icmp_links(table: Table, points: Sequence[PointFrames]) -> dict[int, tuple[int, ...]]:
    """Link ICMP errors to the connection of the packet they quote.

    The quote (`quoted_*` columns) holds the offending packet's protocol, ports and TCP seq as
    they were where the error was made; on the way back conntrack rewrites the quote together
    with the error, so at every point the quote agrees with the tuple that point saw: the
    quoted packet went from the error's destination, from the quoted source port to the quoted
    destination port, and (TCP) with the quoted seq, which NAT never changes. Looked up at the
    error's own point first, then at any point.
    """
    tb = table
    proto_all = tb.proto
    icmp = np.flatnonzero((proto_all == 1) | (proto_all == 58))
    if icmp.shape[0] == 0 or not points:
        return {}
    if any("quoted_proto" not in pf.frames.columns for pf in points):
        return {}
    # Every column is read once for all the rows it is needed at (never per error: a capture
    # of thousands of rejected requests holds thousands of errors).
    e = tb.columns(("quoted_proto", "quoted_sport", "quoted_dport", "quoted_seq", "dst"), icmp)
    qp_all, qs_all = e["quoted_proto"].astype(np.int64), e["quoted_sport"].astype(np.int64)
    keep = np.isin(qp_all, (6, 17)) & (qs_all >= 0)
    if not keep.any():
        return {}
    err_rows = icmp[keep]
    errs = zip(
        err_rows.tolist(),
        tb.pidx[err_rows].tolist(),
        e["dst"][keep].tolist(),
        qp_all[keep].tolist(),
        qs_all[keep].tolist(),
        e["quoted_dport"][keep].tolist(),
        e["quoted_seq"][keep].tolist(),
        strict=True,
    )
    cand = np.flatnonzero(np.isin(tb.sport, np.unique(qs_all[keep])) & np.isin(proto_all, (6, 17)))
    c = tb.columns(("proto", "src", "sport", "dport", "seq"), cand)
    # The candidate rows by what an error's quote names: (proto, source, ports) and, for TCP,
    # also the seq; each key's rows in row order.
    by_ports: dict[tuple[int, ...], list[int]] = {}
    by_seq: dict[tuple[int, ...], list[int]] = {}
    for r, pr, src, sp, dp, seq in zip(
        cand.tolist(),
        c["proto"].tolist(),
        c["src"].tolist(),
        c["sport"].tolist(),
        c["dport"].tolist(),
        c["seq"].tolist(),
        strict=True,
    ):
        by_ports.setdefault((pr, src, sp, dp), []).append(r)
        by_seq.setdefault((pr, src, sp, dp, seq), []).append(r)
    jconn = np.repeat(np.arange(tb.cstart.shape[0] - 1), np.diff(tb.cstart))

    def conn_of(r: int) -> int:
        return int(jconn[int(np.searchsorted(tb.jstart, r, side="right")) - 1])

    links: dict[int, list[int]] = {}
    for r, pidx, dst, qp, qs, qd, qseq in errs:
        if qp == 6 and qseq >= 0:
            hit = by_seq.get((qp, dst, qs, qd, qseq), [])
        else:
            hit = by_ports.get((qp, dst, qs, qd), [])
        if not hit:
            continue
        here = [h for h in hit if int(tb.pidx[h]) == pidx]
        target = conn_of((here or hit)[0])
        err_conn = conn_of(r)
        if target != err_conn:
            links.setdefault(target, [])
            if err_conn not in links[target]:
                links[target].append(err_conn)
    return {k: tuple(sorted(v, key=lambda c: int(tb.cstart_ns[c]))) for k, v in links.items()}


def _drop_stray_icmp(rows: _Rows, points: Sequence[PointFrames], warnings: list[str]) -> _Rows:
    """Leave out ICMP errors about traffic the captures never saw.

    An ICMP error goes back to the sender of the packet it quotes, so that sender shows as a
    source somewhere in the captures when the quoted packet was captured. One whose
    destination never sent anything captured is a late answer to earlier traffic (a host
    unreachable arrives seconds after the ARP timeout): it is no request of this run.
    """
    cols = rows.cols
    err = icmp_error_rows(cols["proto"], cols["icmp_type"])
    if not err.any():
        return rows
    senders = np.unique(cols["src"][~err])
    stray = err & ~np.isin(cols["dst"], senders)
    if not stray.any():
        return rows
    first = int(np.flatnonzero(stray)[0])
    pname = points[int(rows.pidx[first])].point.name
    warnings.append(
        f"{int(stray.sum())} ICMP error frames (first at point {pname}, frame "
        f"{int(rows.row[first]) + 1}: {rows.addresses[int(cols['src'][first])]} -> "
        f"{rows.addresses[int(cols['dst'][first])]}) answer traffic the captures did not see "
        f"and were left out"
    )
    keep = ~stray
    return _Rows(rows.pidx[keep], rows.t[keep], cols.filtered(keep), rows.addresses)


# ----------------------------------------------------------------------------- union-find


def components(n: int, a: I64, b: I64) -> I64:
    """Connected components of n nodes under edges (a[i], b[i]): the smallest node of each."""
    lab = np.arange(n, dtype=np.int64)
    if a.size == 0:
        return lab
    while True:
        la, lb = lab[a], lab[b]
        diff = la != lb
        if not diff.any():
            return lab
        la, lb = la[diff], lb[diff]
        np.minimum.at(lab, np.maximum(la, lb), np.minimum(la, lb))
        while True:
            nxt = lab[lab]
            if np.array_equal(nxt, lab):
                break
            lab = nxt


def _distinct_count(group: I64, value: I64, n_groups: int, n_values: int) -> I64:
    """How many distinct values (0..n_values-1) each group has."""
    if n_values <= 62:
        # A bit per value, OR-ed per group: linear, no sort.
        mask = kernels.group_or(group, np.left_shift(1, value.astype(np.int64)), n_groups)
        bits = np.zeros(n_groups, dtype=np.int64)
        for b in range(n_values):
            bits += (mask >> b) & 1
        return bits
    pairs = _distinct(group * n_values + value)
    return np.bincount(pairs // n_values, minlength=n_groups).astype(np.int64)


def _distinct(values: I64) -> I64:
    """The distinct values, sorted."""
    sv = np.sort(values)
    if sv.shape[0] < 2:
        return sv
    return sv[np.r_[True, sv[1:] != sv[:-1]]]


# ----------------------------------------------------------------------------- correlate


def correlate(points: Sequence[PointFrames]) -> Correlation:
    """Match the same packets across points and group them into connections."""
    names = [pf.point.name for pf in points]
    if len(set(names)) != len(names):
        raise InputError(f"capture point names repeat: {', '.join(names)}")
    warnings: list[str] = []
    notes: list[str] = []
    rows = _drop_stray_icmp(_gather(points, warnings, notes), points, warnings)
    cols = rows.cols
    n = int(rows.t.shape[0])
    n_points = len(points)
    proto = cols["proto"]
    tcp = proto == 6
    flags = cols["tcp_flags"]

    # --- 2. signatures and sends
    partial = cols.derived(
        lambda c: partial_hash(c["payload_len"], c["pcap_len"]) & (np.asarray(c["proto"]) == 6),
        replaced=("payload_len", "pcap_len", "proto"),
    )
    tcp_phash = not bool(partial.any())
    del partial
    # Clock domains (points on one node share one clock), needed from the keys on.
    dom_names: list[str] = []
    # Small dtypes for the per-point codes: they become per-row arrays below.
    dom_of_point: Col = np.zeros(max(n_points, 1), dtype=np.int8 if n_points < 128 else np.int64)
    for i, pf in enumerate(points):
        dname = pf.point.node if pf.point.node is not None else pf.point.name
        if dname not in dom_names:
            dom_names.append(dname)
        dom_of_point[i] = dom_names.index(dname)
    n_dom = max(len(dom_names), 1)
    # Link-scope chatter (RS/NS/MLD, IGMP, ...) repeats the same bytes on every node: it is
    # matched within its node only.
    scoped = link_scope_rows(
        rows.addresses, cols["src"], cols["dst"], cols["proto"], cols["icmp_type"]
    )
    if not tcp_phash:
        warnings.append(
            "some TCP payloads were captured too short for the payload hash (small snaplen): "
            "TCP segments are matched on seq/ack/flags/length/timestamps only"
        )

    def sends(
        proto: Col, cols: _Columns, rows: _Rows
    ) -> tuple[I64, int, Bools, I64, I64, npt.NDArray[np.uint64], I64, int]:
        """Key every row, split equal keys into sends: (journey per row, count, ambiguous
        per journey, rows whose key no other point shares, rows of keys sent more than
        once and their keys, key id per row, key count)."""
        key = cols.derived(
            lambda c: kernels.packet_key(c["proto"], c, tcp_phash=tcp_phash),
            replaced=("seq", "ack"),
        )
        key = scoped_keys(key, scoped, dom_of_point[rows.pidx])
        # Rows are concatenated point by point, each in time order: ordering by (key, row) gives
        # (key, point, time).
        order, s_key = packed_order(key, with_sorted=True)
        del key
        kid = np.empty(n, dtype=np.int64)
        kid[order] = np.cumsum(np.r_[False, s_key[1:] != s_key[:-1]]) if n else kid
        n_kid = int(kid.max()) + 1 if n else 0
        jid, n_j0, jambiguous, lone_row, rep = kernels.sends(
            order,
            s_key,
            rows.pidx,
            rows.t,
            cols["iface"],
            cols["direction"],
            SAME_SEND_WINDOW_NS,
        )
        # Journeys numbered in the order rows first show them (see kernels.first_seen).
        jid, new_of = kernels.first_seen(jid, n_j0)
        amb = np.empty(n_j0, dtype=bool)
        amb[new_of] = jambiguous
        jambiguous = amb
        del new_of, amb
        # Keys that only one point shows: the ISN and offload passes start from these rows.
        lone = np.flatnonzero(lone_row)
        # Keys sent more than once (paired k-th with k-th): time may have to pair them again.
        pos = np.flatnonzero(rep)
        repeats, repeat_key = order[pos], s_key[pos]
        del order, s_key, rep, pos, lone_row
        return jid, n_j0, jambiguous, lone, repeats, repeat_key, kid, n_kid

    jid, n_j0, jambiguous, lone, repeats, repeat_key, kid, n_kid = sends(proto, cols, rows)
    give_back()  # the sort's temporaries are freed: the flow stage reuses their pages
    point_rank = np.array([ROLE_RANK.get(pf.point.role, 1) for pf in points] or [0], dtype=np.int64)
    if lone.shape[0] and ((flags[lone] & TH_SYN) != 0).any():
        # A SYN no other point saw exactly: a firewall may have shifted the sequence numbers.
        shifts = learn_isn_shifts(cols, rows.pidx.astype(np.int64), rows.t, point_rank)
        if shifts is not None:
            _shift_warnings(shifts, points, rows, warnings)
            if shifts.flows:
                cols["seq"], cols["ack"] = shifts.seq, shifts.ack
                jid, n_j0, jambiguous, lone, repeats, repeat_key, kid, n_kid = sends(
                    proto, cols, rows
                )

    # --- 3. flows (a tuple at a point, split at each new SYN) and connections
    if points:
        ep_s, fkey = cols.per_point(lambda p, c, lut: kernels.flow_keys(p, c, lut))
    else:
        ep_s, fkey = np.zeros(0, np.int64), np.zeros(0, np.uint64)
    # Flows numbered as rows first show them (see kernels.first_seen).
    fid, n_fid = kernels.dense(fkey, ordered=False)
    del fkey
    # A key two flows show at one vantage names different packets (identical probes from
    # several senders): its sends are matched within a node only and never become clock samples.
    amb_row = ambiguous_keys(kid, n_kid, rows.pidx, cols["iface"], cols["direction"], fid)[kid]
    # Which journeys may be clock samples: a key sent several times is paired k-th with k-th,
    # which is only sure where every send of it shows at the same points.
    noclock_row = amb_row | (
        jambiguous[jid]
        & ~(repeated_rows(n, repeats) & same_points(kid, n_kid, jid, n_j0, rows.pidx))
    )
    del kid
    cols.forget("src", "dst", "iface", "direction", "payload_len", "seq")
    give_back()
    if amb_row.any():
        old_jid = jid
        jid, n_j0 = split_by_domain(jid, amb_row, dom_of_point[rows.pidx], n_dom)
        amb = np.zeros(n_j0, dtype=bool)
        amb[jid] = jambiguous[old_jid] | amb_row
        jambiguous = amb
        del old_jid, amb
        keep = ~amb_row[repeats]
        repeats, repeat_key = repeats[keep], repeat_key[keep]
        del keep
    del amb_row
    syn = tcp & ((flags & (TH_SYN | TH_ACK)) == TH_SYN)
    fid = _join_local_redirects(
        fid, n_fid, syn, tcp & ((flags & (TH_SYN | TH_ACK)) == (TH_SYN | TH_ACK)), rows.pidx, cols
    )
    (syn_seq,) = cols.at(np.flatnonzero(syn), "seq")
    fid, n_fid = _split_at_syns(fid, n_fid, syn, syn_seq, rows.t)
    del syn_seq
    # The capture times are not read again until the clocks: gathered anew there rather than
    # held through the connection stages (the memory peak).
    rows.t = np.zeros(0, np.int64)
    fid, new_of = kernels.first_seen(fid, n_fid)
    n_fid = int(new_of.max()) + 1 if n else 0
    del new_of

    jconf = np.zeros(n_j0, dtype=bool)
    jconf[jid[syn]] = True
    nontcp = ~tcp
    jconf[jid[nontcp]] = ~jambiguous[jid[nontcp]]
    label, split = _learn_connections(jid, n_j0, fid, n_fid, jconf)
    del jconf, nontcp
    if split:
        warnings.append(
            f"{split} matches contradicted the tuples learned for their connections "
            f"and were split instead of merged"
        )
    # A send is one journey per connection: split journeys that straddle two connections.
    n_j = n_j0
    if split:
        jid, n_j = kernels.dense(jid * (n_fid + 1) + label)
    used = np.zeros(n_fid + 1, dtype=bool)
    used[label] = True
    renumber = np.cumsum(used) - 1
    conn_of_row, n_c = renumber[label], int(used.sum())
    del label, used, renumber

    # --- 4a. orientation: forward = from the client (the SYN's sender, else the first sender)
    echo_req = (~tcp) & np.isin(cols["icmp_type"], _ICMP_ECHO_REQUEST) & (proto != 17)
    anchor = syn | echo_req
    fwd_src = np.full(n_fid, -1, dtype=np.int64)
    first = kernels.first_index(fid, n_fid)
    fwd_src[first >= 0] = ep_s[first[first >= 0]]
    anchored = np.zeros(n_fid, dtype=bool)
    fwd_src[fid[anchor]] = ep_s[anchor]
    anchored[fid[anchor]] = True
    is_fwd = ep_s == fwd_src[fid]
    jfwd = _journey_forward(jid, n_j, is_fwd)
    # A flow seen only mid-connection may have been oriented by a reply: flip it where its rows
    # mostly disagree with the packets they belong to.
    agree = np.bincount(fid[is_fwd == jfwd[jid]], minlength=n_fid)
    total = np.bincount(fid, minlength=n_fid)
    flip = (~anchored) & (agree * 2 < total)
    if flip.any():
        is_fwd = np.where(flip[fid], ~is_fwd, is_fwd)
        jfwd = _journey_forward(jid, n_j, is_fwd)
    # Flows have done their part (connections and orientation): free their per-row arrays.
    del fid, ep_s, syn, anchor, echo_req, fwd_src, first, anchored, agree, total, flip

    rows.t = cols["t_ns"].astype(np.int64, copy=False)

    # --- 4a'. offload super-segments: matched to their wire segments by sequence range
    offload_byte: npt.NDArray[np.int8] | None = None
    if lone.shape[0]:
        joins = super_segment_joins(
            lone, conn_of_row, is_fwd, rows.pidx.astype(np.int64), point_rank, cols, rows.t
        )
        if joins is not None:
            jid = jid.copy()
            jid[joins.rows] = jid[joins.targets]
            jid, n_j = kernels.dense(jid)
            jfwd = _journey_forward(jid, n_j, is_fwd)
            offload_byte = np.zeros(n, dtype=np.int8)
            offload_byte[joins.rows] = np.where(joins.last_byte, 2, 1)
        _offload_warnings(joins, lone, points, rows, warnings)

    # --- 4b. clocks
    rank_of_point: Col = np.array(
        [ROLE_RANK.get(pf.point.role, 1) for pf in points] or [0], dtype=np.int8
    )
    # An ICMP error travels back to the sender of the packet it quotes: towards the client.
    max_rank = int(rank_of_point.max())
    rank = rank_of_point[rows.pidx]
    rank = np.where(icmp_error_rows(proto, cols["icmp_type"]), max_rank - rank, rank)
    ref = _reference_domain(points, dom_names)
    dom = dom_of_point[rows.pidx]
    jconn = np.zeros(n_j, dtype=np.int64)
    jconn[jid] = conn_of_row
    solution = clk.solve(dom_names or ["-"], ref, [])
    if n and len(dom_names) > 1:
        cell = jid * n_dom + dom
        tmin = kernels.group_min(cell, rows.t, n_j * n_dom)
        tmax = kernels.group_max(cell, rows.t, n_j * n_dom)
        present = (tmax != np.iinfo(np.int64).min).reshape(n_j, n_dom)
        present &= (kernels.group_max(jid, noclock_row, n_j) <= 0)[:, None]
        crank = np.minimum(kernels.group_min(conn_of_row * n_dom + dom, rank, n_c * n_dom), 99)
        pairs = clk.pair_bounds(
            tmin.reshape(n_j, n_dom),
            tmax.reshape(n_j, n_dom),
            present,
            jfwd,
            jconn,
            crank.reshape(n_c, n_dom),
            n_c,
        )
        del cell, tmin, tmax, present, crank
        solution = clk.solve(dom_names, ref, pairs)
    warnings.extend(solution.warnings)
    dom_off = np.array(solution.offsets or (0,), dtype=np.int64)
    tc = rows.t - dom_off[dom]
    for d, model in enumerate(solution.models):
        if model is not None:
            here = dom == d
            tc[here] = model.correct(rows.t[here])
    # No later step reads the capture times or the clock domains of rows.
    rows.t = np.zeros(0, np.int64)
    del dom

    # --- 4b'. sends told apart only by time: paired again on corrected time where needed
    if repeats.shape[0]:
        regroup = regroup_by_time(
            repeat_key, conn_of_row[repeats], tc[repeats], jid[repeats], RESEND_GAP_NS
        )
        if regroup is not None:
            pos, send = regroup
            jid = jid.copy()
            jid[repeats[pos]] = n_j + send
            jid, n_j = kernels.dense(jid)
            jfwd = _journey_forward(jid, n_j, is_fwd)
            jconn = np.zeros(n_j, dtype=np.int64)
            jconn[jid] = conn_of_row
            warnings.append(
                f"{int(send.max()) + 1} sends of segments with no IP ID and no TCP timestamps "
                f"(nothing but time to tell their copies apart) were paired across points by "
                f"clock-corrected time: a copy was missing at some point"
            )

    # Per connection, how many points saw it (in connection order; permuted below), and which
    # points matched nothing: done before the path order's arrays exist, to keep the peak low.
    cpts_by_conn = _distinct_count(conn_of_row, rows.pidx, n_c, n_points)
    _match_warnings(points, rows.pidx, jid, n_j, warnings)
    del conn_of_row
    # From here on only the TCP columns of each journey's first row are read again (gathered
    # anew): the cached columns would only raise the peak.
    cols.forget(*_KEEP)
    del proto, flags, tcp

    # --- 4c. path order
    rank_dir = np.where(jfwd[jid], rank, max_rank - rank)
    jstart_t = kernels.group_min(jid, tc, n_j)
    cstart_t = kernels.group_min(jconn, jstart_t, n_c)
    corder = np.lexsort((np.arange(n_c), cstart_t))
    crank_of = np.empty(n_c, dtype=np.int64)
    crank_of[corder] = np.arange(n_c)
    # Journeys by (connection, start time, id): stable sorts, the least significant key first.
    by_t = packed_order(jstart_t - int(jstart_t.min())) if n_j else np.zeros(0, np.int64)
    jorder = by_t[kernels.group_order(crank_of[jconn][by_t], n_c)]
    del by_t
    jpos = np.empty(n_j, dtype=np.int64)
    jpos[jorder] = np.arange(n_j)
    # Path order is causal order. The ends are fixed by role (the client sends first, the server
    # receives last: a clock estimate that says otherwise is wrong, and shows as a flagged
    # negative delay rather than a silently reordered path). Between them, within one clock
    # domain the timestamps are exact and across domains the corrected times are the best
    # estimate. One sort key: journey, end rank, time since the journey's first sighting
    # (never negative; clipped at 4.3 s, far beyond one send). Rows are already in (point,
    # time) order and the sort is stable, so equal times keep the points' order.
    sort_key = np.clip(tc - jstart_t[jid], 0, 0xFFFFFFFF)
    jpos_row = jpos[jid]
    del jid, rank, is_fwd
    sort_key |= (jpos_row * 4 + rank_dir) << 32
    del rank_dir
    # Sorting by journey first (a counting sort) leaves the full key nearly sorted, where a
    # stable argsort only has to fix each journey's few rows.
    by_j = kernels.group_order(jpos_row, n_j)
    final = by_j[np.argsort(sort_key[by_j], kind="stable")]
    del by_j, sort_key

    sj = jpos_row[final]
    del jpos_row
    jstart = np.flatnonzero(np.r_[True, sj[1:] != sj[:-1]]) if n else np.zeros(0, np.int64)
    jstart = np.r_[jstart, n].astype(np.int64)
    jconn_sorted = crank_of[jconn][jorder]
    cbound = np.r_[True, jconn_sorted[1:] != jconn_sorted[:-1]] if n_j else np.zeros(0, bool)
    cstart = np.r_[np.flatnonzero(cbound), n_j].astype(np.int64)

    # --- retransmissions: later sends of the same sequence space in one connection
    jfirst_row = final[jstart[:-1]]
    jforward_sorted = jfwd[jorder]
    seq0, plen0, flags0, proto0 = cols.at(jfirst_row, "seq", "payload_len", "tcp_flags", "proto")
    jretrans = _retransmissions(jconn_sorted, jforward_sorted, seq0, plen0, flags0, proto0 == 6)
    del seq0, plen0, flags0, proto0

    offsets = {pf.point.name: int(dom_off[dom_of_point[i]]) for i, pf in enumerate(points)}
    # The table keeps where each row comes from; its other columns are read when asked for.
    addresses = tuple(rows.addresses)
    r_pidx, r_row = rows.pidx, rows.row
    sources = tuple((c, lut) for c, _, lut in rows.cols.sources)
    del rows, cols
    # Compact dtypes where the values allow (point and frame indexes): the table lives as long
    # as the analysis.
    t_pidx = r_pidx[final]
    del r_pidx
    t_row = r_row[final].astype(np.int32 if n == 0 or int(r_row.max()) < 1 << 31 else np.int64)
    del r_row
    t_tc = tc[final]
    del tc
    _negative_delay_warnings(sj, dom_of_point[t_pidx], t_tc, dom_names, warnings)
    del sj
    table = Table(
        pidx=t_pidx,
        row=t_row,
        tc=t_tc,
        jstart=jstart,
        jforward=jforward_sorted,
        jretrans=jretrans,
        cstart=cstart,
        cstart_ns=cstart_t[corder] if n_c else np.zeros(0, np.int64),
        cpoints=cpts_by_conn[corder],
        addresses=addresses,
        sources=sources,
        offload=offload_byte[final] if offload_byte is not None else None,
    )
    return Correlation(
        points=tuple(pf.point for pf in points),
        clocks=solution.estimates,
        warnings=tuple(warnings),
        table=table,
        point_frames=tuple(points),
        offsets=offsets,
        clock_models={
            pf.point.name: model
            for i, pf in enumerate(points)
            for model in [solution.models[dom_of_point[i]] if solution.models else None]
            if model is not None
        },
        notes=tuple(notes),
    )


def _join_local_redirects(
    fid: I64, n_fid: int, syn: Bools, synack: Bools, pidx: Col, cols: _Columns
) -> I64:
    """One flow per connection where a NAT inside the capturing host itself split it in two.

    A REDIRECT (istio's sidecar capture) or a DNAT in the OUTPUT chain of the namespace being
    captured rewrites the request after the capture point's socket and un-rewrites the reply
    before it: on the pod's loopback the SYN reads app -> 127.0.0.1:15001 while the SYN-ACK
    reads ClusterIP -> app. Such a pair is two flows, one with a SYN and no SYN-ACK, one with a
    SYN-ACK and no SYN, at the same point, the SYN-ACK acknowledging the SYN's sequence number:
    the reply flow joins the request's. Nothing else is merged.
    """
    if not syn.any() or not synack.any():
        return fid
    has_syn = np.zeros(n_fid, dtype=bool)
    has_syn[fid[syn]] = True
    has_synack = np.zeros(n_fid, dtype=bool)
    has_synack[fid[synack]] = True
    lone_syn = syn & ~has_synack[fid]
    lone_synack = synack & ~has_syn[fid]
    if not lone_syn.any() or not lone_synack.any():
        return fid
    s_rows, a_rows = np.flatnonzero(lone_syn), np.flatnonzero(lone_synack)
    (seq,) = cols.at(s_rows, "seq")
    (ack,) = cols.at(a_rows, "ack")
    pidx64 = np.asarray(pidx, dtype=np.int64)
    want: dict[tuple[int, int], int] = {}
    for p, q, f in zip(pidx64[s_rows].tolist(), seq.tolist(), fid[s_rows].tolist(), strict=True):
        key = (p, (int(q) + 1) & 0xFFFFFFFF)
        want[key] = -1 if key in want and want[key] != f else f  # ambiguous: leave it alone
    target = np.arange(n_fid, dtype=np.int64)
    for p, a, f in zip(pidx64[a_rows].tolist(), ack.tolist(), fid[a_rows].tolist(), strict=True):
        g = want.get((p, int(a) & 0xFFFFFFFF), -1)
        if g >= 0 and g != f:
            target[f] = g
    return target[fid] if (target != np.arange(n_fid)).any() else fid


def _split_at_syns(fid: I64, n_fid: int, syn: Bools, syn_seq: Col, t: I64) -> tuple[I64, int]:
    """Split each flow where a connection starts (its SYN) and where a new one reuses the tuple.

    `syn_seq` is the sequence number of each SYN row (in row order). Returns new flow ids (not
    dense: flow f becomes f * epochs + epoch) and their range.
    """
    if not syn.any():
        return fid, n_fid
    ef, es, et = fid[syn], np.asarray(syn_seq, dtype=np.int64), t[syn]
    first_t = kernels.group_min(ef, et, n_fid)
    per_fid = np.bincount(_distinct(ef * (1 << 32) + es) >> 32, minlength=n_fid)
    later = t >= first_t[fid]
    multi = np.flatnonzero(per_fid > 1)
    if not multi.shape[0]:
        # One SYN per flow (the usual case): rows before it are epoch 0, the rest epoch 1.
        out = fid * 2
        out += later
        return out, n_fid * 2
    epoch = later.astype(np.int64)
    del later
    # Rare (a port reused within the capture): count the distinct SYNs before each row.
    for f in multi.tolist():
        mine = ef == f
        first_by_isn: dict[int, int] = {}
        for isn, when in zip(es[mine].tolist(), et[mine].tolist(), strict=True):
            first_by_isn[isn] = min(when, first_by_isn.get(isn, when))
        times = np.sort(np.array(list(first_by_isn.values()), dtype=np.int64))
        sel = np.flatnonzero(fid == f)
        epoch[sel] = np.searchsorted(times, t[sel], side="right")
    epochs = int(epoch.max()) + 1
    return fid * epochs + epoch, n_fid * epochs


def _learn_connections(jid: I64, n_j: int, fid: I64, n_fid: int, jconf: Bools) -> tuple[I64, int]:
    """Label every row with its connection; returns (label per row, journeys split)."""
    n = jid.shape[0]
    if n == 0:
        return np.zeros(0, np.int64), 0
    # Each journey's anchor: the flow of its first row.
    anchor_j = fid[kernels.first_index(jid, n_j)]
    conf_row = jconf[jid]
    # Phase 1: confident matches define connections.
    lab = components(n_fid, fid[conf_row], anchor_j[jid[conf_row]])
    learned = np.zeros(n_fid, dtype=bool)
    learned[fid[conf_row]] = True
    # Phase 2: other matches may attach a flow to one learned connection, never join two.
    other = ~conf_row
    if other.any():
        rl = np.where(learned[fid], lab[fid], -1)
        # Per journey, the one learned connection its other rows name (-1: none, or several).
        unlearned = rl < 0
        rl[conf_row] = -1
        single = kernels.group_single(jid, rl, n_j)
        del rl
        vote = other & unlearned & (single[jid] >= 0)
        del unlearned
        if vote.any():
            vk, vc = np.unique(fid[vote] * (n_fid + 1) + single[jid[vote]], return_counts=True)
            vf, vl = vk // (n_fid + 1), vk % (n_fid + 1)
            best = np.lexsort((-vc, vf))
            vf, vl = vf[best], vl[best]
            head = np.r_[True, vf[1:] != vf[:-1]]
            lab[vf[head]] = vl[head]
            learned[vf[head]] = True
        # Phase 3: flows no confident match reached form connections among themselves.
        rest = other & ~learned[fid] & ~learned[anchor_j][jid]
        if rest.any():
            sub = components(n_fid, fid[rest], anchor_j[jid[rest]])
            free = ~learned
            lab = np.where(free, sub, lab)
            lab = lab[lab]
    label = lab[fid]
    # Journeys whose rows ended up in more than one connection.
    split = int((kernels.group_min(jid, label, n_j) < kernels.group_max(jid, label, n_j)).sum())
    return label, split


def _journey_forward(jid: I64, n_j: int, is_fwd: Bools) -> Bools:
    votes = np.bincount(jid, weights=is_fwd.astype(np.float64), minlength=n_j)
    count = np.bincount(jid, minlength=n_j)
    return votes * 2 >= count


def _reference_domain(points: Sequence[PointFrames], dom_names: list[str]) -> int:
    for role in ("client", "external"):
        for pf in points:
            if pf.point.role == role:
                name = pf.point.node if pf.point.node is not None else pf.point.name
                return dom_names.index(name)
    return 0


def _retransmissions(conn: I64, fwd: Bools, seq: I64, plen: I64, flags: I64, tcp: Bools) -> I64:
    """For journeys in time order: how many earlier sends of the same segment there were."""
    n = conn.shape[0]
    out = np.zeros(n, dtype=np.int64)
    counts = tcp & ((plen > 0) | ((flags & (TH_SYN | TH_FIN)) != 0))
    if not counts.any():
        return out
    idx = np.flatnonzero(counts)
    k = kernels.mix_rows(
        7, (conn[idx] * 2 + fwd[idx], seq[idx], plen[idx], flags[idx] & (TH_SYN | TH_FIN | TH_RST))
    )
    o = packed_order(k)
    ks = k[o]
    new = np.r_[True, ks[1:] != ks[:-1]]
    starts = np.flatnonzero(new)
    grp = np.cumsum(new) - 1
    ordinal = np.arange(o.shape[0]) - starts[grp]
    out[idx[o]] = ordinal
    return out


def _match_warnings(
    points: Sequence[PointFrames], pidx: I64, jid: I64, n_j: int, warnings: list[str]
) -> None:
    if len(points) < 2 or pidx.shape[0] == 0:
        return
    npts = len(points)
    lo = kernels.group_min(jid, pidx, n_j)
    hi = kernels.group_max(jid, pidx, n_j)
    shared = (lo != hi)[jid]  # the packet was seen at two points or more
    seen = np.bincount(pidx[shared], minlength=npts)
    have = np.bincount(pidx, minlength=npts)
    for i, pf in enumerate(points):
        if have[i] and not seen[i]:
            warnings.append(f"point {pf.point.name}: no packet matched any other point")


def _negative_delay_warnings(
    j: I64, d: I64, t: I64, dom_names: list[str], warnings: list[str]
) -> None:
    """Hops between clock domains that go back in time (rows in path order: journey `j`,
    clock domain `d`, corrected time `t`)."""
    if j.shape[0] < 2:
        return
    step = (j[1:] == j[:-1]) & (d[1:] != d[:-1])
    neg = step & (t[1:] < t[:-1])
    if neg.any():
        worst = int((t[:-1] - t[1:])[neg].max())
        pairs = sorted({(int(a), int(b)) for a, b in zip(d[:-1][neg], d[1:][neg], strict=True)})
        where = ", ".join(f"{dom_names[a]} -> {dom_names[b]}" for a, b in pairs[:4])
        warnings.append(
            f"{int(neg.sum())} hops have a negative one-way delay after clock correction "
            f"(up to {worst} ns; {where}): the offset estimate is off or clocks drift"
        )


def _flow_text(rows: _Rows, r: int) -> str:
    c = rows.cols
    src, dst = rows.addresses[int(c["src"][r])], rows.addresses[int(c["dst"][r])]
    a = Endpoint(src, int(c["sport"][r]))
    b = Endpoint(dst, int(c["dport"][r]))
    if int(c["tcp_flags"][r]) & TH_ACK:  # a SYN-ACK: the client is its destination
        a, b = b, a
    return f"{a} > {b}"


def _shift_warnings(
    shifts: SeqShifts, points: Sequence[PointFrames], rows: _Rows, warnings: list[str]
) -> None:
    for f in shifts.flows[:3]:
        warnings.append(
            f"point {points[f.point].point.name}: a middlebox shifted the TCP sequence numbers "
            f"of {_flow_text(rows, f.row)} (client's by {signed_shift(f.forward):+d}, server's "
            f"by {signed_shift(f.reverse):+d}; learned from the SYN): corrected before matching"
        )
    if len(shifts.flows) > 3:
        warnings.append(
            f"{len(shifts.flows) - 3} more connections had sequence numbers shifted by a "
            f"middlebox (firewall ISN randomisation) and were corrected before matching"
        )
    if shifts.inconsistent:
        warnings.append(
            f"{shifts.inconsistent} SYN-ACKs did not acknowledge the sequence shift their SYN "
            f"showed: those connections were left uncorrected"
        )


def _offload_warnings(
    joins: SuperJoins | None,
    lone: I64,
    points: Sequence[PointFrames],
    rows: _Rows,
    warnings: list[str],
) -> None:
    joined = joins.rows if joins is not None else np.zeros(0, np.int64)
    if joined.shape[0]:
        last = int(joins.last_byte.sum()) if joins is not None else 0
        warnings.append(
            f"{joined.shape[0]} offload super-segments (GSO/TSO/GRO) were matched to the wire "
            f"segments other points saw by TCP sequence range: {joined.shape[0] - last} captured "
            f"on transmit take the time of their first byte, {last} captured on receive (GRO) "
            f"that of their last byte"
        )
    opts = rows.cols["opts"][lone]
    flagged = lone[((opts & OPT_SUPER) != 0) & ~np.isin(lone, joined)]
    if flagged.shape[0]:
        counts = np.bincount(rows.pidx[flagged], minlength=len(points))
        for i in np.flatnonzero(counts).tolist():
            warnings.append(
                f"point {points[i].point.name}: {int(counts[i])} offload super-segments "
                f"(GSO/TSO/GRO) matched no other point, exactly or by sequence range"
            )


# ----------------------------------------------------------------------------- objects


_DIRECTIONS: Mapping[int, Direction] = {DIR_IN: "in", DIR_OUT: "out"}


def journey_kind(proto: int, flags: int, plen: int) -> str:
    if proto == 6:
        if flags & TH_SYN:
            return "syn-ack" if flags & TH_ACK else "syn"
        if flags & TH_RST:
            return "rst"
        if flags & TH_FIN:
            return "fin"
        return "data" if plen > 0 else "ack"
    return PROTO_NAMES.get(proto, "ip")


_OFFLOAD_BYTE: Mapping[int, str] = {1: "first byte", 2: "last byte"}
# The table columns an Observation is built from.
_OBSERVATION_COLUMNS = (
    "proto",
    "sport",
    "dport",
    "src",
    "dst",
    "iface",
    "encap",
    "ip_id",
    "ttl",
    "t",
    "direction",
    "plen",
    "flags",
)


def _materialise(corr: Correlation, index: int) -> Connection:
    tb = corr.table
    pts = corr.point_frames
    addr = tb.addresses
    j0, j1 = int(tb.cstart[index]), int(tb.cstart[index + 1])
    # This connection's rows, each column read once for all of them.
    base = int(tb.jstart[j0])
    span = slice(base, int(tb.jstart[j1]))
    c = {name: v.tolist() for name, v in tb.columns(_OBSERVATION_COLUMNS, span).items()}
    pidx_l = tb.pidx[span].tolist()
    row_l = tb.row[span].tolist()
    off_l = tb.offload[span].tolist() if tb.offload is not None else None
    journeys: list[Journey] = []
    for j in range(j0, j1):
        r0, r1 = int(tb.jstart[j]) - base, int(tb.jstart[j + 1]) - base
        obs = []
        for r in range(r0, r1):
            pf = pts[pidx_l[r]]
            prname = PROTO_NAMES.get(c["proto"][r], "ip")
            ports = prname in ("tcp", "udp")
            sp, dp = c["sport"][r], c["dport"][r]
            tup = Tuple5(
                prname,
                Endpoint(addr[c["src"][r]], sp if ports else None),
                Endpoint(addr[c["dst"][r]], dp if ports else None),
            )
            iface = c["iface"][r]
            ifname = pf.ifnames.get(iface) or pf.frames.interfaces.get(iface)
            enc = c["encap"][r]
            encap = pf.frames.encaps[enc] if 0 <= enc < len(pf.frames.encaps) else ()
            ip_id = c["ip_id"][r]
            ttl = c["ttl"][r]
            obs.append(
                Observation(
                    point=pf.point.name,
                    frame=row_l[r],
                    t_ns=c["t"][r],
                    tuple5=tup,
                    interface=ifname,
                    direction=_DIRECTIONS.get(c["direction"][r]),
                    ttl=ttl if ttl >= 0 else None,
                    ip_id=ip_id if ip_id >= 0 else None,
                    encap=tuple(encap),
                    payload_len=c["plen"][r],
                    offload=_OFFLOAD_BYTE.get(off_l[r]) if off_l is not None else None,
                )
            )
        r0 += base
        direction: Literal["forward", "reverse"] = "forward" if tb.jforward[j] else "reverse"
        journeys.append(
            Journey(
                kind=journey_kind(
                    c["proto"][r0 - base], c["flags"][r0 - base], c["plen"][r0 - base]
                ),
                direction=direction,
                observations=tuple(obs),
                retransmission=int(tb.jretrans[j]),
            )
        )
    first_fwd = next((jr for jr in journeys if jr.direction == "forward"), journeys[0])
    client = first_fwd.observations[0].tuple5
    if first_fwd.direction == "reverse":
        client = client.reversed()
    backend: Endpoint | None = None
    for tr in translations(first_fwd):
        if tr.kind in ("DNAT", "DNAT+SNAT"):
            backend = tr.after.dst
    seen_points: list[str] = []
    seen_tuples: list[tuple[str, Tuple5]] = []
    ordered = [first_fwd] + [jr for jr in journeys if jr is not first_fwd]
    for jr in ordered:
        for o in jr.observations:
            if o.point not in seen_points:
                seen_points.append(o.point)
            tup = o.tuple5 if jr.direction == "forward" else o.tuple5.reversed()
            if (o.point, tup) not in seen_tuples:
                seen_tuples.append((o.point, tup))
    return Connection(
        index=index,
        protocol=client.proto,
        client=client,
        points=tuple(seen_points),
        tuples=tuple(seen_tuples),
        journeys=tuple(journeys),
        start_ns=int(tb.cstart_ns[index]),
        backend=backend,
    )


def translations(journey: Journey) -> list[Translation]:
    """The rewrites between consecutive observations of one packet, in path order."""
    out = []
    obs = journey.observations
    for a, b in zip(obs, obs[1:], strict=False):
        kind = translation_kind(a.tuple5, b.tuple5, journey.direction == "reverse")
        if kind is not None:
            out.append(Translation(kind, a.tuple5, b.tuple5))
    return out

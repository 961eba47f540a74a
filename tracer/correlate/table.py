"""The row table: every matched row sorted by connection, packet and path order.

Per row the table keeps only where the row comes from (point, frame) and its corrected time;
every other value is read from the points' own columns when asked for. Also what is read from
it for all connections at once (`request_times`). Pure arrays: no model objects, no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from tracer.correlate import kernels
from tracer.model import CapturePoint
from tracer.pcap.columns import TH_FIN, TH_RST, TH_SYN, Frames

I64 = npt.NDArray[np.int64]
Bools = npt.NDArray[np.bool_]
Col = npt.NDArray[Any]  # an integer column in the dtype the reader gave it
BIG = np.iinfo(np.int64).max

PROTO_NAMES: Mapping[int, str] = {6: "tcp", 17: "udp", 1: "icmp", 58: "icmpv6"}


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
        read = dict(zip(wanted, read_rows(self.sources, pidx, frow, *wanted), strict=True))
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


def read_rows(
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
class RequestTimes:
    """Per connection, on the reference clock: the first and last sighting of its first request
    data packet (TCP, not a resend) and of the first response data packet after it; NO_TIME
    where there is none. What an L7 proxy's legs must nest by (`proxy`)."""

    req_first: I64
    req_last: I64
    resp_first: I64
    resp_last: I64


NO_TIME = np.iinfo(np.int64).min


def request_times(tb: Table) -> RequestTimes:
    """`RequestTimes` of every connection, columnar."""
    n_c = int(tb.cstart.shape[0]) - 1
    n_j = int(tb.jforward.shape[0])
    none = np.full(n_c, NO_TIME, dtype=np.int64)
    if n_j == 0:
        return RequestTimes(none, none, none, none)
    jconn = np.repeat(np.arange(n_c, dtype=np.int64), np.diff(tb.cstart))
    jfirst = tb.jstart[:-1]
    jlast = tb.jstart[1:] - 1
    jpos = np.arange(n_j, dtype=np.int64)
    proto, flags, plen = (tb.column(k, jfirst).astype(np.int64) for k in ("proto", "flags", "plen"))
    data = (proto == 6) & (plen > 0) & ((flags & (TH_SYN | TH_RST | TH_FIN)) == 0)
    fwd = tb.jforward
    req = kernels.group_min(jconn, np.where(fwd & data & (tb.jretrans == 0), jpos, BIG), n_c)
    has_req = req != BIG
    after = np.where(has_req[jconn], jpos > req[jconn], False)
    resp = kernels.group_min(jconn, np.where(~fwd & data & after, jpos, BIG), n_c)
    has_resp = resp != BIG
    tc = tb.tc

    def times(j: I64, has: Bools) -> tuple[I64, I64]:
        jj = np.where(has, j, 0)
        return np.where(has, tc[jfirst[jj]], NO_TIME), np.where(has, tc[jlast[jj]], NO_TIME)

    rf, rl = times(req, has_req)
    sf, sl = times(resp, has_resp)
    return RequestTimes(rf, rl, sf, sl)

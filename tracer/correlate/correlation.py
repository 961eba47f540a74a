"""A correlation: the row table with the clocks, warnings and points it was matched from.

What every later step reads (`select`, `build_path`, the listing, the proxy stitcher): model
objects are built from the table one connection at a time, when asked for. No matching here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from tracer.correlate import clocks as clk
from tracer.correlate import kernels
from tracer.correlate.icmp import icmp_links
from tracer.correlate.materialise import materialise
from tracer.correlate.table import I64, PointFrames, RequestTimes, Table, request_times
from tracer.model import CapturePoint, ClockEstimate, Connection, Observation


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
        return materialise(self.table, self.point_frames, index)

    @cached_property
    def request_times(self) -> RequestTimes:
        """`RequestTimes` of every connection (computed once)."""
        return request_times(self.table)

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

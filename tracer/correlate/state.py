"""What the phases of `correlate` hand on: the points' clock domains and, per row, the packet
and connection each row belongs to so far.

Mutable on purpose (`Packets`): each phase replaces what it changes and empties what no later
phase reads, so that no caller holds a working array past its stage. Data only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from tracer.correlate.table import I64, Bools, Col, PointFrames

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
NO_ROWS: I64 = np.zeros(0, np.int64)
NO_BOOLS: Bools = np.zeros(0, bool)


@dataclass(frozen=True)
class Domains:
    """The points' clock domains (points on one node share one clock) and role ranks."""

    names: list[str]
    of_point: Col  # per point: its domain (a small dtype: it becomes per-row arrays)
    rank: I64  # per point: ROLE_RANK of its role

    @property
    def n(self) -> int:
        return max(len(self.names), 1)


def domains(points: Sequence[PointFrames]) -> Domains:
    """Each point's clock domain (its node, else itself) and the rank of its role."""
    n_points = len(points)
    names: list[str] = []
    of_point: Col = np.zeros(max(n_points, 1), dtype=np.int8 if n_points < 128 else np.int64)
    for i, pf in enumerate(points):
        dname = pf.point.node if pf.point.node is not None else pf.point.name
        if dname not in names:
            names.append(dname)
        of_point[i] = names.index(dname)
    rank = np.array([ROLE_RANK.get(pf.point.role, 1) for pf in points] or [0], dtype=np.int64)
    return Domains(names, of_point, rank)


@dataclass
class Packets:
    """What the phases of `correlate` hand on, per row (or per journey/key where named).

    Mutable on purpose: a phase replaces what it changes and empties what no later phase reads,
    so that no caller holds a working array past its stage.
    """

    jid: I64  # the packet (journey) of each row
    n_j: int
    jambiguous: Bools  # per journey: its sends told apart by order only
    lone: I64  # rows whose key no other point shares (the ISN and offload passes start there)
    repeats: I64  # rows of keys sent more than once (time may pair them again), their keys
    repeat_key: npt.NDArray[np.uint64]
    kid: I64  # key id of each row
    n_kid: int
    # Set by later phases: rows whose journeys may not be clock samples, each row's connection,
    # rows sent by the client's side, per journey its direction and connection, each row's
    # clock-corrected time and its end rank along its packet's way (ROLE_RANK).
    noclock: Bools = field(default_factory=lambda: NO_BOOLS)
    conn: I64 = field(default_factory=lambda: NO_ROWS)
    n_c: int = 0
    is_fwd: Bools = field(default_factory=lambda: NO_BOOLS)
    jfwd: Bools = field(default_factory=lambda: NO_BOOLS)
    jconn: I64 = field(default_factory=lambda: NO_ROWS)
    tc: I64 = field(default_factory=lambda: NO_ROWS)
    rank: Col = field(default_factory=lambda: NO_ROWS)
    max_rank: int = 0

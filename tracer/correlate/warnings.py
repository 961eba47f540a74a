"""What the correlator tells the user about the captures: frames it could not match, points
that matched nothing, corrections it made (shifted sequence numbers, offload super-segments),
and hops that go back in time. Only words from arrays already computed; nothing is decided here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from tracer.correlate import kernels
from tracer.correlate.offload import SeqShifts, SuperJoins, signed_shift
from tracer.correlate.scope import encrypted_tunnel_rows
from tracer.correlate.table import I64, Bools, Col, PointFrames
from tracer.model import Endpoint
from tracer.pcap.columns import OPT_SUPER, TH_ACK


def frame_warnings(
    name: str,
    c: Mapping[str, Any],
    ip: Bools,
    known: Bools,
    broken: Bools,
    warnings: list[str],
    notes: list[str],
) -> None:
    """What point `name` held that is not matched: frames that are not IP, packets of an
    encrypted tunnel, other IP protocols, truncated or fragmented frames."""
    n = ip.shape[0]
    if n and not ip.any():
        warnings.append(f"point {name}: none of its {n} frames was IP")
    elif (~ip).sum():
        notes.append(f"point {name}: {int((~ip).sum())} frames were not IP")
    sealed = int((ip & encrypted_tunnel_rows(np.asarray(c["proto"]), c["sport"], c["dport"])).sum())
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


def match_warnings(
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


def negative_delay_warnings(
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


def _flow_text(c: Mapping[str, Any], addresses: Sequence[str], r: int) -> str:
    src, dst = addresses[int(c["src"][r])], addresses[int(c["dst"][r])]
    a = Endpoint(src, int(c["sport"][r]))
    b = Endpoint(dst, int(c["dport"][r]))
    if int(c["tcp_flags"][r]) & TH_ACK:  # a SYN-ACK: the client is its destination
        a, b = b, a
    return f"{a} > {b}"


def shift_warnings(
    shifts: SeqShifts,
    points: Sequence[PointFrames],
    cols: Mapping[str, Any],
    addresses: Sequence[str],
    warnings: list[str],
) -> None:
    for f in shifts.flows[:3]:
        warnings.append(
            f"point {points[f.point].point.name}: a middlebox shifted the TCP sequence numbers "
            f"of {_flow_text(cols, addresses, f.row)} (client's by "
            f"{signed_shift(f.forward):+d}, server's by {signed_shift(f.reverse):+d}; "
            f"learned from the SYN): corrected before matching"
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


def offload_warnings(
    joins: SuperJoins | None,
    lone: I64,
    points: Sequence[PointFrames],
    cols: Mapping[str, Any],
    pidx: Col,
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
    opts = cols["opts"][lone]
    flagged = lone[((opts & OPT_SUPER) != 0) & ~np.isin(lone, joined)]
    if flagged.shape[0]:
        counts = np.bincount(pidx[flagged], minlength=len(points))
        for i in np.flatnonzero(counts).tolist():
            warnings.append(
                f"point {points[i].point.name}: {int(counts[i])} offload super-segments "
                f"(GSO/TSO/GRO) matched no other point, exactly or by sequence range"
            )

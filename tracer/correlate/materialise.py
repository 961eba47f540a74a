"""Model objects from the row table: one `Connection` with its journeys and observations.

Built only when asked for, one connection at a time, so that a capture of millions of frames
costs arrays, not objects. Reads the table; matches nothing and reorders nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

from tracer.correlate.table import PROTO_NAMES, PointFrames, Table
from tracer.model import (
    Connection,
    Direction,
    Endpoint,
    Journey,
    Observation,
    Translation,
    Tuple5,
    translation_kind,
)
from tracer.pcap.columns import DIR_IN, DIR_OUT, TH_ACK, TH_FIN, TH_RST, TH_SYN

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


def materialise(tb: Table, pts: Sequence[PointFrames], index: int) -> Connection:
    """Connection `index` of the table as model objects: its journeys and their observations."""
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

"""Many overlapping connections at once: `dnat_scenario` copied with numpy, as columns or pcaps.

Each connection gets its own client address and port, ISNs, TSval offsets and IP IDs; the truth
says which packet every frame shows. Files are written only where the caller asks.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from tracer.model import CapturePoint
from tracer.pcap.columns import COLUMNS, TH_ACK, Frames
from tracer.testing.synth.exchanges import dnat_scenario
from tracer.testing.synth.scenario import Scenario
from tracer.testing.wire import (
    ETHERNET,
    LINUX_SLL2,
    Sighting,
    interface_ids,
    write_bulk_pcap,
)


def bulk_dnat(
    n_connections: int,
    *,
    seed: int = 0,
    offsets: Mapping[str, int] | None = None,
    spacing_ns: int = 50_000,
) -> tuple[tuple[CapturePoint, ...], dict[str, Frames]]:
    """Many overlapping copies of `dnat_scenario` as columns (see `_bulk`)."""
    points, frames, _, _, _ = _bulk(n_connections, seed, offsets, spacing_ns)
    return points, frames


@dataclass(frozen=True)
class BulkTruth:
    """Which packet every frame of a bulk run shows: `packet[point][i]` for frame i.

    Packet ids are connection * `per_connection` + the template packet's id, unique per run.
    """

    packet: Mapping[str, npt.NDArray[np.int64]]
    per_connection: int
    template: Scenario


def bulk_dnat_truth(
    n_connections: int,
    *,
    seed: int = 0,
    spacing_ns: int = 50_000,
    retransmit: bool = False,
    timestamps: bool = True,
) -> tuple[tuple[CapturePoint, ...], dict[str, Frames], BulkTruth]:
    """`bulk_dnat` (true times, no clock offsets) with the identity of every frame."""
    points, frames, rows, _, conn = _bulk(
        n_connections, seed, None, spacing_ns, retransmit=retransmit, timestamps=timestamps
    )
    template = dnat_scenario(retransmit=retransmit, timestamps=timestamps)
    per = max(p.id for p in template.packets) + 1
    packet: dict[str, npt.NDArray[np.int64]] = {}
    for p in points:
        ids = np.array([s.packet for s in template.frames[p.name]], dtype=np.int64)
        packet[p.name] = conn[p.name] * per + ids[rows[p.name]]
    return points, frames, BulkTruth(packet, per, template)


def bulk_dnat_pcaps(
    directory: str | Path,
    n_connections: int,
    *,
    seed: int = 0,
    offsets: Mapping[str, int] | None = None,
    spacing_ns: int = 50_000,
    any_capture: bool = False,
    ipv6: bool = False,
) -> tuple[tuple[CapturePoint, ...], dict[str, Path]]:
    """`bulk_dnat` written as one nanosecond pcap per point (<directory>/<name>.pcap).

    Ethernet frames by default. With `any_capture`, a point whose interface is "any" (the node)
    is written as `tcpdump -i any` writes it, LINUX_SLL2 frames carrying ifindexes, and the
    node's links as `ip -j link` JSON beside it (<directory>/<name>.links.json). With `ipv6`,
    the same connections over IPv6 (`dnat_scenario(ipv6=True)`).
    """
    points, frames, rows, templates, _ = _bulk(n_connections, seed, offsets, spacing_ns, ipv6=ipv6)
    out: dict[str, Path] = {}
    for p in points:
        path = Path(directory) / f"{p.name}.pcap"
        fr = frames[p.name]
        sll2 = any_capture and p.interface == "any"
        index = interface_ids(templates[p.name], start=1)
        write_bulk_pcap(
            path,
            templates[p.name],
            fr.columns,
            rows[p.name],
            fr.addresses,
            linktype=LINUX_SLL2 if sll2 else ETHERNET,
            ifindex=index,
        )
        if sll2:
            links = [{"ifindex": i, "ifname": name} for name, i in index.items()]
            (Path(directory) / f"{p.name}.links.json").write_text(json.dumps(links))
        out[p.name] = path
    return points, out


def _bulk(
    n_connections: int,
    seed: int,
    offsets: Mapping[str, int] | None,
    spacing_ns: int,
    *,
    retransmit: bool = False,
    timestamps: bool = True,
    ipv6: bool = False,
) -> tuple[
    tuple[CapturePoint, ...],
    dict[str, Frames],
    dict[str, npt.NDArray[np.int64]],
    dict[str, tuple[Sighting, ...]],
    dict[str, npt.NDArray[np.int64]],
]:
    """Many overlapping copies of `dnat_scenario`, built as columns with numpy (no objects).

    Each connection gets its own client address and port, ISNs, TSval offsets and IP IDs and
    starts `spacing_ns` after the previous one, so the connections interleave. 40 observations
    per connection (10 at the client, 20 at node-a, 10 at the server).
    """
    template = dnat_scenario(
        offsets=offsets, retransmit=retransmit, timestamps=timestamps, ipv6=ipv6
    )
    rng = np.random.default_rng(seed)
    n = n_connections
    isn_c = rng.integers(0, 1 << 32, n, dtype=np.int64)
    isn_s = rng.integers(0, 1 << 32, n, dtype=np.int64)
    ts_c = rng.integers(0, 1 << 31, n, dtype=np.int64)
    ts_s = rng.integers(0, 1 << 31, n, dtype=np.int64)
    id_c = rng.integers(0, 1 << 16, n, dtype=np.int64)
    id_s = rng.integers(0, 1 << 16, n, dtype=np.int64)
    start = np.arange(n, dtype=np.int64) * spacing_ns
    # Client n uses 10.<a>.<b>.<c> (a unique address) and a port from the ephemeral range.
    client_port = 32768 + (np.arange(n) % 28000)
    forward = {p.id: p.direction == "forward" for p in template.packets}
    out: dict[str, Frames] = {}
    template_rows: dict[str, npt.NDArray[np.int64]] = {}
    conn_rows: dict[str, npt.NDArray[np.int64]] = {}
    for point in template.points:
        base = template.columns(point.name)
        rows = template.frames[point.name]
        fwd = np.array([forward[s.packet] for s in rows], dtype=bool)
        m = len(rows)
        c = {k: np.asarray(v) for k, v in base.columns.items()}
        cols: dict[str, npt.NDArray[np.generic]] = {}
        for name, dtype, _ in COLUMNS:
            cols[name] = np.tile(c[name], n).astype(dtype)
        conn = np.repeat(np.arange(n), m)
        f = np.tile(fwd, n)
        with np.errstate(over="ignore"):
            seq = c["seq"].astype(np.int64)
            ack = c["ack"].astype(np.int64)
            tsv = c["tsval"].astype(np.int64)
            tse = c["tsecr"].astype(np.int64)
            ipid = c["ip_id"].astype(np.int64)
            seq_t, ack_t = np.tile(seq, n), np.tile(ack, n)
            own = np.where(f, isn_c[conn], isn_s[conn])
            peer = np.where(f, isn_s[conn], isn_c[conn])
            has_ack = (np.tile(c["tcp_flags"], n) & TH_ACK) != 0
            cols["seq"] = ((seq_t + own) & 0xFFFFFFFF).astype(np.uint32)
            cols["ack"] = np.where(has_ack, (ack_t + peer) & 0xFFFFFFFF, 0).astype(np.uint32)
            tso = np.where(f, ts_c[conn], ts_s[conn])
            tsp = np.where(f, ts_s[conn], ts_c[conn])
            tse_t = np.tile(tse, n)
            cols["tsval"] = ((np.tile(tsv, n) + tso) & 0xFFFFFFFF).astype(np.uint32)
            cols["tsecr"] = np.where(tse_t != 0, (tse_t + tsp) & 0xFFFFFFFF, 0).astype(np.uint32)
            ipid_t = np.tile(ipid, n)
            ido = np.where(f, id_c[conn], id_s[conn])
            cols["ip_id"] = np.where(ipid_t > 0, (ipid_t + ido) & 0xFFFF, ipid_t).astype(np.int32)
        cols["t_ns"] = np.tile(c["t_ns"], n) + start[conn]
        # Client address: a fresh address id per connection appended after the template's.
        client_id = base.addresses.index("fd00:10:244:1::7" if ipv6 else "10.244.1.7")
        n_addr = len(base.addresses)
        src, dst = np.tile(c["src"], n), np.tile(c["dst"], n)
        cols["src"] = np.where(src == client_id, n_addr + conn, src).astype(np.int32)
        cols["dst"] = np.where(dst == client_id, n_addr + conn, dst).astype(np.int32)
        sport, dport = np.tile(c["sport"], n), np.tile(c["dport"], n)
        cols["sport"] = np.where(sport == 53700, client_port[conn], sport).astype(np.int32)
        cols["dport"] = np.where(dport == 53700, client_port[conn], dport).astype(np.int32)
        order = np.argsort(cols["t_ns"], kind="stable")
        cols = {k: v[order] for k, v in cols.items()}
        template_rows[point.name] = np.tile(np.arange(m, dtype=np.int64), n)[order]
        conn_rows[point.name] = conn[order]
        ks = np.arange(n)
        if ipv6:
            extra = tuple(f"fd00:64::{k >> 16:x}:{k & 0xFFFF:x}" for k in ks.tolist())
        else:
            extra = tuple(f"10.{64 + (k >> 16)}.{(k >> 8) & 255}.{k & 255}" for k in ks.tolist())
        out[point.name] = Frames(
            path=f"{point.name}.pcap",
            linktypes=base.linktypes,
            columns=cols,
            encaps=base.encaps,
            addresses=base.addresses + extra,
            interfaces=dict(base.interfaces),
        )
    return template.points, out, template_rows, dict(template.frames), conn_rows

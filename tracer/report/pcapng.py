"""Write one request's packets from every capture point into a single annotated pcapng.

One interface block (IDB) per (point, interface), named "point/interface", with the source's
link type; every frame of the request's connection copied byte for byte from its source capture
(read at the frame offsets the container index gives), stamped with the clock-corrected time
(the Path's clock estimates), commented (opt_comment) with its journey, hop and translation, and
sorted by corrected time. Open it in Wireshark to see the request across the cluster as one
trace. Written with struct (no scapy: it would cost a Python object per packet); file mode 0600.
"""

from __future__ import annotations

import mmap
import os
import shlex
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import BinaryIO, Protocol

from tracer.errors import InputError, NothingMatchedError
from tracer.model import CapturePoint, Connection, Path, Translation, translation_kind
from tracer.pcap.columns import DIR_IN, DIR_OUT, Frames
from tracer.pcap.container import index_capture
from tracer.pcap.records import (
    BT_EPB,
    BT_IDB,
    EPB_FLAGS,
    IF_NAME,
    IF_TSRESOL,
    OPT_COMMENT,
    OPT_ENDOFOPT,
)
from tracer.pcap.records import PCAPNG_BOM as BYTE_ORDER_MAGIC
from tracer.pcap.records import PCAPNG_SHB as BT_SHB
from tracer.report.mermaid import rewrite_words

# The pcapng block and option numbers are the reader's (tracer.pcap.records); only the
# section header's application option is written and never read.
SHB_USERAPPL = 4


class PointSource(Protocol):
    """What the writer needs of a loaded point (tracer.correlate.PointFrames fits)."""

    @property
    def point(self) -> CapturePoint: ...

    @property
    def frames(self) -> Frames: ...

    @property
    def ifnames(self) -> Mapping[int, str]: ...


@dataclass(frozen=True)
class Packet:
    """One frame to write (internal, but returned by `plan_packets` for tests)."""

    point: str
    frame: int
    t_ns: int  # corrected
    comment: str


def _opt(code: int, value: bytes) -> bytes:
    pad = (-len(value)) % 4
    return struct.pack("<HH", code, len(value)) + value + b"\0" * pad


def _block(btype: int, body: bytes) -> bytes:
    total = 12 + len(body)
    return struct.pack("<II", btype, total) + body + struct.pack("<I", total)


# How Wireshark reads this file right: the same packet seen at several points is one TCP
# segment several times, which its sequence analysis would flag as retransmissions and
# duplicate ACKs; and Linux's VXLAN port (flannel, Calico, Cilium) is 8472, not IANA's 4789.
WIRESHARK_OPTIONS = ("-o", "tcp.analyze_sequence_numbers:FALSE", "-d", "udp.port==8472,vxlan")


def wireshark_command(path: str | os.PathLike[str], program: str = "wireshark") -> str:
    """The command line that opens a merged pcapng with the settings it needs (tshark too)."""
    return shlex.join([program, *WIRESHARK_OPTIONS, os.fspath(path)])


def _shb() -> bytes:
    note = (
        "Merged by pathtrace: one request's packets from every capture point on one clock. "
        "A packet seen at several points appears once per sighting (see each packet's comment); "
        f"open with: {shlex.join(['wireshark', *WIRESHARK_OPTIONS])} FILE"
    )
    opts = (
        _opt(OPT_COMMENT, note.encode())
        + _opt(SHB_USERAPPL, b"pathtrace")
        + _opt(OPT_ENDOFOPT, b"")
    )
    body = struct.pack("<IHHq", BYTE_ORDER_MAGIC, 1, 0, -1) + opts
    return _block(BT_SHB, body)


def _idb(linktype: int, snaplen: int, name: str) -> bytes:
    opts = (
        _opt(IF_NAME, name.encode("utf-8"))
        + _opt(IF_TSRESOL, bytes([9]))  # nanoseconds
        + _opt(OPT_ENDOFOPT, b"")
    )
    return _block(BT_IDB, struct.pack("<HHI", linktype, 0, snaplen) + opts)


def _epb(iface: int, t_ns: int, data: bytes, origlen: int, flags: int, comment: str) -> bytes:
    pad = (-len(data)) % 4
    opts = b""
    if comment:
        opts += _opt(OPT_COMMENT, comment.encode("utf-8"))
    if flags:
        opts += _opt(EPB_FLAGS, struct.pack("<I", flags))
    if opts:
        opts += _opt(OPT_ENDOFOPT, b"")
    t = max(t_ns, 0)
    body = (
        struct.pack("<IIIII", iface, t >> 32, t & 0xFFFFFFFF, len(data), max(origlen, len(data)))
        + data
        + b"\0" * pad
        + opts
    )
    return _block(BT_EPB, body)


def point_offsets(path: Path) -> dict[str, int]:
    """Offset (ns) to subtract from each point's clock: reference time = node time - offset."""
    by_node = {c.node: c.offset_ns for c in path.clocks}
    out: dict[str, int] = {}
    for p in path.points:
        out[p.name] = by_node.get(p.node or p.name, 0)
    return out


def _connections(connection: Connection | Sequence[Connection]) -> list[Connection]:
    return [connection] if isinstance(connection, Connection) else list(connection)


def plan_packets(
    connection: Connection | Sequence[Connection],
    path: Path,
    offsets: Mapping[str, int] | None = None,
) -> list[Packet]:
    """Every observation of the connection(s) with its corrected time and comment, in time order.

    A request that crossed an L7 proxy gives every leg's connection (client first); each
    comment then names its connection, and the proxy hops say what the proxy did.
    """
    offs = dict(point_offsets(path))
    if offsets:
        offs.update(offsets)
    conns = _connections(connection)
    legs = len(conns) > 1
    hops: dict[tuple[str, int], str] = {}
    for name, seq in (("forward", path.forward), ("reverse", path.reverse)):
        for i, h in enumerate(seq):
            if h.frame is not None:
                text = f"path {name} hop {i + 1}"
                if h.kind == "proxy":
                    text += " (the L7 proxy sends the " + (
                        "request on)" if name == "forward" else "response back)"
                    )
                hops[(h.point, h.frame)] = text
    out: dict[tuple[str, int], Packet] = {}
    for conn in conns:
        _plan_connection(conn, hops, offs, out, legs)
    return sorted(out.values(), key=lambda p: (p.t_ns, p.point, p.frame))


def _plan_connection(
    connection: Connection,
    hops: Mapping[tuple[str, int], str],
    offs: Mapping[str, int],
    out: dict[tuple[str, int], Packet],
    legs: bool,
) -> None:
    which = f"connection #{connection.index} " if legs else ""
    for j, journey in enumerate(connection.journeys):
        prev = None
        for k, o in enumerate(journey.observations):
            parts = [
                f"{which}{journey.direction} {journey.kind} (journey {j + 1}"
                + (f", retransmission {journey.retransmission}" if journey.retransmission else "")
                + f", sighting {k + 1}/{len(journey.observations)})",
                f"at {o.point}" + (f" {o.interface}" if o.interface else ""),
                str(o.tuple5),
            ]
            hop = hops.get((o.point, o.frame))
            if hop:
                parts.append(hop)
            if prev is not None:
                kind = translation_kind(prev.tuple5, o.tuple5, journey.direction == "reverse")
                if kind is not None:
                    parts.append(rewrite_words(Translation(kind, prev.tuple5, o.tuple5)))
            prev = o
            key = (o.point, o.frame)
            if key not in out:  # a frame is one sighting of one journey; keep the first
                out[key] = Packet(o.point, o.frame, o.t_ns - offs.get(o.point, 0), "; ".join(parts))


def write_merged_pcapng(
    out_path: str | os.PathLike[str],
    points: Sequence[PointSource],
    connection: Connection | Sequence[Connection],
    path: Path,
    *,
    offsets: Mapping[str, int] | None = None,
) -> int:
    """Write the connection's frames from every point into `out_path`; returns the packet count.

    Give every leg's connection for a request that crossed an L7 proxy (see `plan_packets`).
    """
    packets = plan_packets(connection, path, offsets)
    if not packets:
        raise NothingMatchedError("the request has no packets to write")
    by_name = {p.point.name: p for p in points}
    missing = sorted({p.point for p in packets} - set(by_name))
    if missing:
        raise InputError(f"no capture loaded for point(s) {', '.join(missing)}")
    idbs: list[bytes] = []
    iface_ids: dict[tuple[str, int, str], int] = {}
    blocks: list[bytes] = []
    files: dict[str, tuple[BinaryIO, mmap.mmap]] = {}
    try:
        indexes = {}
        for name in sorted({p.point for p in packets}):
            src = by_name[name]
            fpath = src.frames.path
            try:
                handle = open(fpath, "rb")  # noqa: SIM115 - closed in the finally below
                mapped = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
            except (OSError, ValueError) as e:
                raise InputError(f"{fpath}: cannot read the capture again: {e}") from e
            files[name] = (handle, mapped)
            indexes[name] = index_capture(mapped, fpath)
        for pk in packets:
            src = by_name[pk.point]
            ix = indexes[pk.point]
            if not 0 <= pk.frame < len(ix):
                raise InputError(f"{src.frames.path}: frame {pk.frame + 1} is not in the file")
            mapped = files[pk.point][1]
            linktype = int(ix.linktype[pk.frame])
            file_iface = int(ix.iface[pk.frame])
            col_iface = int(src.frames.columns["iface"][pk.frame])
            ifname = (
                src.ifnames.get(col_iface)
                or src.frames.interfaces.get(col_iface)
                or (
                    ix.interfaces[file_iface].name if 0 <= file_iface < len(ix.interfaces) else None
                )
                or (str(col_iface) if col_iface >= 0 else None)
                or src.point.interface
                or "capture"
            )
            key = (pk.point, linktype, ifname)
            if key not in iface_ids:
                snap = ix.interfaces[max(file_iface, 0)].snaplen if ix.interfaces else 262144
                iface_ids[key] = len(idbs)
                idbs.append(_idb(linktype, snap or 262144, f"{pk.point}/{ifname}"))
            off, cap = int(ix.data_off[pk.frame]), int(ix.caplen[pk.frame])
            data = bytes(mapped[off : off + cap])
            d = int(ix.direction[pk.frame])
            flags = 1 if d == DIR_IN else 2 if d == DIR_OUT else 0
            blocks.append(
                _epb(iface_ids[key], pk.t_ns, data, int(ix.origlen[pk.frame]), flags, pk.comment)
            )
    finally:
        for fh, mm in files.values():
            try:
                mm.close()
            except BufferError:
                pass  # a view still refers to the map; the GC frees it
            fh.close()
    out = os.fspath(out_path)
    try:
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.fchmod(fd, 0o600)  # an existing file keeps its mode through O_TRUNC
        with os.fdopen(fd, "wb") as f:
            f.write(_shb())
            for b in idbs:
                f.write(b)
            for b in blocks:
                f.write(b)
    except OSError as e:
        raise InputError(f"{out}: cannot write the pcapng: {e.strerror or e}") from e
    return len(blocks)

"""Fixed `Path` objects for the renderer tests: a ClusterIP DNAT and a NodePort DNAT+SNAT.

Every number here is chosen by hand (a request at 2024-05-01 12:00:00 UTC, hops tens of
microseconds apart), so the golden files can be checked by eye against this file.
"""

from __future__ import annotations

from tracer.model import (
    CapturePoint,
    ClockEstimate,
    Endpoint,
    Hop,
    Latency,
    Path,
    Request,
    Segment,
    Translation,
    Tuple5,
)
from tracer.trace import Listing

START_NS = 1_714_564_800_123_456_789  # 2024-05-01 12:00:00.123456789 UTC

CLIENT = Endpoint("10.244.1.7", 53700)
SERVICE = Endpoint("10.96.0.100", 80)
BACKEND = Endpoint("10.244.2.9", 8080)

FWD_PRE = Tuple5("tcp", CLIENT, SERVICE)
FWD_POST = Tuple5("tcp", CLIENT, BACKEND)
DNAT = Translation("DNAT", FWD_PRE, FWD_POST)
UNDNAT = Translation("un-DNAT", FWD_POST.reversed(), FWD_PRE.reversed())


def clusterip_path() -> Path:
    """Client pod on node-a -> ClusterIP -> backend pod on node-b, VXLAN between the nodes."""
    forward = (
        Hop("client", "client", "node-a", "eth0", "out", 0, FWD_PRE, 64, None, 0),
        Hop("node-a", "node", "node-a", "cali1", "in", 21_000, FWD_PRE, 64, None, 0),
        Hop("node-a", "node", "node-a", "eth0", "out", 58_000, FWD_POST, 63, DNAT, 1),
        Hop("node-b", "node", "node-b", "eth0", "in", 212_000, FWD_POST, 63, None, 0),
        Hop("server", "server", "node-b", "eth0", "in", 250_000, FWD_POST, 62, None, 0),
    )
    reverse = (
        Hop("server", "server", "node-b", "eth0", "out", 301_000, FWD_POST.reversed(), 64),
        Hop("node-b", "node", "node-b", "eth0", "out", 330_000, FWD_POST.reversed(), 63),
        Hop("node-a", "node", "node-a", "eth0", "in", 481_000, FWD_POST.reversed(), 63),
        Hop("node-a", "node", "node-a", "cali1", "out", 502_000, FWD_PRE.reversed(), 62, UNDNAT),
        Hop("client", "client", "node-a", "eth0", "in", 517_000, FWD_PRE.reversed(), 62),
    )
    return Path(
        request=Request(
            index=0,
            protocol="tcp",
            client=str(CLIENT),
            destination=str(SERVICE),
            backend=str(BACKEND),
            summary="HTTP GET /hello -> 200",
            start_ns=START_NS,
        ),
        forward=forward,
        reverse=reverse,
        latency=Latency(
            total_ns=1_402_000,
            connect_ns=517_000,
            server_ns=51_000,
            segments=(
                Segment("client", "node-a", 21_000, 20_000, 7),
                Segment("node-a", "node-b", 154_000, 150_500, 7),
                Segment("node-b", "server", 38_000, 36_000, 7),
            ),
        ),
        clocks=(ClockEstimate("node-b", "node-a", 1_250_000, 12_000, 14),),
        warnings=("point server: 2 frames cut by the snaplen",),
    )


NODE_IP = Endpoint("192.168.56.11", 30080)
MASQ = Endpoint("192.168.56.11", 41234)
EXT = Endpoint("192.168.56.1", 60000)


def nodeport_path() -> Path:
    """An external client -> NodePort on node-a -> backend on node-b, with masquerade (SNAT).

    The clock of node-b is uncertain enough that one segment comes out negative.
    """
    pre = Tuple5("tcp", EXT, NODE_IP)
    post = Tuple5("tcp", MASQ, BACKEND)
    both = Translation("DNAT+SNAT", pre, post)
    unboth = Translation("un-DNAT+un-SNAT", post.reversed(), pre.reversed())
    return Path(
        request=Request(1, "tcp", str(EXT), str(NODE_IP), str(BACKEND), "", START_NS + 5_000),
        forward=(
            Hop("node-a", "node", "node-a", "eth0", "in", 0, pre, 64),
            Hop("node-a", "node", "node-a", "flannel.1", "out", 40_000, post, 63, both),
            Hop("server", "server", "node-b", "eth0", "in", 31_000, post, 62),
        ),
        reverse=(
            Hop("server", "server", "node-b", "eth0", "out", 90_000, post.reversed(), 64),
            Hop("node-a", "node", "node-a", "eth0", "out", 160_000, pre.reversed(), 63, unboth),
        ),
        latency=Latency(
            total_ns=None,
            connect_ns=None,
            server_ns=59_000,
            segments=(Segment("node-a", "server", -9_000, -9_000, 1, negative=True),),
        ),
        clocks=(ClockEstimate("node-b", "node-a", -3_000_000, 40_000, 2, drift_ppm=1.5),),
    )


def udp_path_no_reply() -> Path:
    """A DNS query that got no answer: no reverse hops, no latency known."""
    t = Tuple5("udp", Endpoint("10.244.1.7", 40000), Endpoint("10.96.0.10", 53))
    return Path(
        request=Request(
            2, "udp", "10.244.1.7:40000", "10.96.0.10:53", None, "DNS A web -> no reply", START_NS
        ),
        forward=(Hop("client", "client", None, None, None, 0, t),),
        reverse=(),
        latency=Latency(None, None, None),
    )


def listing(*, fmt_rows: tuple[int, ...] | None = None, n: int = 4) -> Listing:
    """A listing of `n` generated DNAT connections with their outcomes made different by
    leaving packets out of the captures: #0 ok, #1 unanswered (only its SYNs were captured),
    #2 incomplete (the capture began after its handshake), #3 incomplete (ended before the
    close); past four, the same every eleven connections in turn, the rest ok."""
    import numpy as np

    from tracer.correlate import PointFrames, correlate
    from tracer.correlate.listing import connection_table
    from tracer.summary import Summaries
    from tracer.testing.accuracy import _subset
    from tracer.testing.synth import bulk_dnat_truth

    points, frames, truth = bulk_dnat_truth(n, spacing_ns=700_000_000 if n <= 4 else 3_000_000)
    kind = {p.id: p.kind for p in truth.template.packets}
    pfs = []
    for p in points:
        ids = truth.packet[p.name]
        conn, k = ids // truth.per_connection, [kind[int(i)] for i in ids % truth.per_connection]
        conn = np.where(conn < 4, conn, conn % 11)
        drop = np.array(
            [
                (c == 1 and kk != "syn")
                or (c == 2 and kk in ("syn", "syn-ack"))
                or (c == 3 and kk == "fin")
                for c, kk in zip(conn.tolist(), k, strict=True)
            ],
            dtype=bool,
        )
        fr = frames[p.name]
        pfs.append(PointFrames(p, _subset(fr, ~drop, np.asarray(fr.columns["t_ns"]))))
    corr = correlate(pfs)
    table = connection_table(corr)
    n = len(table)
    answered = [(i if i < 4 else i % 11) != 1 for i in range(n)]
    texts = ["HTTP GET / (Host web) -> 200" if a else "" for a in answered]
    status = np.array([200 if a else -1 for a in answered], dtype=np.int64)
    rows = np.arange(n, dtype=np.int64)
    return Listing(
        table=table,
        summaries=Summaries(texts, status, np.full(n, -1, dtype=np.int64)),
        rows=rows if fmt_rows is None else np.array(fmt_rows, dtype=np.int64),
        counted=rows,
        point_nodes=tuple(p.node for p in corr.points),
        total=n,
        hidden=0,
    )


POINTS = (CapturePoint("client", "client", "points/client.pcap", node="node-a"),)

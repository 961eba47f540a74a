"""Correlation: match the same packet across capture points and build one request's path.

Pure: takes decoded columns (`tracer.pcap.columns.Frames`) and capture points, returns model
objects. No file reading, no printing. Keys only on what NAT leaves alone (TCP seq/ack/flags,
payload length and hash, TCP timestamps; UDP length and payload hash; ICMP type/code/seq and
payload hash); the IPv4 ID only breaks ties.

Public API (stable; the CLI and the lab depend on it):

    correlate(points: Sequence[PointFrames]) -> Correlation
    select(correlation, *, index=None, match=None) -> Connection
    build_path(correlation, connection, *, l7=None) -> Path
    l7_requests(correlation, connection, read) -> dict[int, protocols.http.HttpRequestInfo]
    stitch(correlation, connection, l7) -> (chain of connection indices, stitches)
    parse_match(text) -> MatchSpec
"""

from tracer.correlate.correlation import Correlation
from tracer.correlate.engine import correlate
from tracer.correlate.materialise import translations
from tracer.correlate.path import build_path
from tracer.correlate.proxy import l7_requests, stitch
from tracer.correlate.select import MatchSpec, parse_match, select
from tracer.correlate.table import PointFrames

__all__ = [
    "Correlation",
    "MatchSpec",
    "PointFrames",
    "build_path",
    "correlate",
    "l7_requests",
    "parse_match",
    "select",
    "stitch",
    "translations",
]

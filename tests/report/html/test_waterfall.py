"""The latency waterfall: one round trip, and an L7 proxy's own time."""

from __future__ import annotations

from tests.report import sample
from tracer.report.html import waterfall_bars


def test_waterfall_is_one_round_trip() -> None:
    path = sample.clusterip_path()
    bars = waterfall_bars(path)
    labels = [b.label for b in bars]
    assert labels[0] == "client → node-a"
    server = [b for b in bars if b.kind == "server"]
    assert [b.ns for b in server] == [path.latency.server_ns]
    out = [b for b in bars if not b.kind.startswith("back") and b.kind != "server"]
    # The way out adds up to the first packet's arrival at the server.
    assert sum(b.ns for b in out) == path.forward[-1].t_ns - path.forward[0].t_ns
    back = [b for b in bars if b.kind.startswith("back")]
    assert sum(b.ns for b in back) == path.reverse[-1].t_ns - path.reverse[0].t_ns


def test_waterfall_shows_an_l7_proxy_s_own_time() -> None:
    from tests.correlate.test_legs import stitched_path as _path

    bars = waterfall_bars(_path())
    proxy = [(b.label, b.ns, b.kind) for b in bars if b.kind.endswith("proxy")]
    assert proxy == [
        ("L7 proxy proxy: its own time", 800, "proxy"),
        ("L7 proxy proxy: its own time", 300, "back-proxy"),
    ]

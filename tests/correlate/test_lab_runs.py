"""The correlator on real lab runs (pcaps/): path order, proxy stitching, stray ICMP.

Ground truth comes from each run's manifest (`extra.lab`, written from the lab's configuration
and the kernel), never from the correlator.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path as FsPath
from typing import Any

import pytest

from tracer.correlate import Correlation, PointFrames, build_path, correlate, l7_requests, select
from tracer.inputs import load_run
from tracer.model import Hop
from tracer.pcap.columns import Frames
from tracer.pcap.payload import PayloadReader

PCAPS = FsPath(__file__).resolve().parents[2] / "pcaps"
pytestmark = pytest.mark.skipif(not PCAPS.is_dir(), reason="no lab runs")


def _truth(run: str) -> dict[str, Any]:
    lab: dict[str, Any] = json.loads((PCAPS / run / "manifest.json").read_text())["extra"]["lab"]
    return lab


def _correlate(
    run: str, shift: dict[str, Callable[[Any], Any]] | None = None
) -> tuple[Correlation, dict[str, Frames]]:
    loaded = load_run(str(PCAPS / run))
    pfs = []
    for p in loaded.points:
        frames = p.frames
        if shift and p.point.name in shift:
            cols = dict(frames.columns)
            cols["t_ns"] = shift[p.point.name](cols["t_ns"])
            frames = Frames(
                frames.path,
                frames.linktypes,
                cols,
                frames.encaps,
                frames.addresses,
                frames.interfaces,
                frames.comments,
                frames.warnings,
            )
        pfs.append(PointFrames(p.point, frames, p.ifnames))
    return correlate(pfs), {pf.point.name: pf.frames for pf in pfs}


def _points(hops: tuple[Hop, ...], skip: tuple[str, ...] = ()) -> list[str]:
    out: list[str] = []
    for h in hops:
        if h.point not in skip and (not out or out[-1] != h.point):
            out.append(h.point)
    return out


def _same_domain_monotonic(hops: tuple[Hop, ...]) -> bool:
    last: dict[str | None, int] = {}
    for h in hops:
        if h.node in last and h.t_ns < last[h.node]:
            return False
        last[h.node] = h.t_ns
    return True


def _stitched(run: str, index: int | None = None):  # type: ignore[no-untyped-def]
    corr, frames = _correlate(run)
    conn = select(corr, index=index)
    with PayloadReader() as reader:
        l7 = l7_requests(corr, conn, lambda point, frame: reader.read(frames[point], frame))
    return build_path(corr, conn, l7=l7)


@pytest.mark.parametrize("run", ["ingress", "ingress-hostnet"])
def test_ingress_runs_trace_as_one_request_through_the_proxy(run: str) -> None:
    truth = _truth(run)
    for index in (1, 2):  # whichever leg is chosen, the whole request comes out
        path = _stitched(run, index)
        assert len(path.stitches) == 1
        s = path.stitches[0]
        assert s.confidence == "high"
        assert s.proxy_ns is not None and s.proxy_ns > 0
        # The underlay bridge capture is a real hop but not in the lab's list of points.
        assert _points(path.forward, skip=("extdns",)) == truth["expected_path"]
        assert path.forward[0].point == truth["expected_path"][0]
        assert path.reverse[-1].point == truth["expected_path"][0]
        assert [h.kind for h in path.forward].count("proxy") == 1
        assert [h.kind for h in path.reverse].count("proxy") == 1
        assert all(b.t_ns >= a.t_ns for a, b in zip(path.forward, path.forward[1:], strict=False))
        assert all(b.t_ns >= a.t_ns for a, b in zip(path.reverse, path.reverse[1:], strict=False))
        assert path.request.client.startswith("192.168.50.100:")
        assert path.request.backend == "10.244.2.3:8080"  # web-b, see the lab notes
        assert path.latency.proxy_ns == s.proxy_ns
        # The request is the client leg's: its index and its tuple, whichever leg was chosen.
        assert path.request.index == s.client_leg
        assert any(f"from connection #{s.client_leg} on" in n for n in path.notes)
        assert not any("an L7 proxy" in w for w in path.warnings)


def test_without_l7_info_connections_stay_separate() -> None:
    corr, _ = _correlate("ingress")
    path = build_path(corr, select(corr))
    assert path.stitches == ()


def test_ingress_hops_follow_causality() -> None:
    corr, _ = _correlate("ingress")
    truth = _truth("ingress")
    by_client = {str(corr.connection(i).client.src.ip): i for i in range(len(corr))}
    leg1 = build_path(corr, corr.connection(by_client["192.168.50.100"]))
    # external -> (underlay bridge) -> node1 eth0 -> DNAT -> the ingress pod, not ingress first.
    assert _points(leg1.forward) == ["external", "extdns", "node1", "ingress"]
    assert _points(leg1.reverse) == ["ingress", "node1", "extdns", "external"]
    assert str(corr.connection(by_client["192.168.50.100"]).backend) == truth["backend"]
    leg2 = build_path(corr, corr.connection(by_client["10.244.1.5"]))
    # The underlay capture sees the VXLAN packet between the two nodes' eth0.
    assert _points(leg2.forward) == ["ingress", "node1", "extdns", "node2", "web-b"]
    for p in (leg1, leg2):
        assert _same_domain_monotonic(p.forward) and _same_domain_monotonic(p.reverse)
        assert not any(s.negative for s in p.latency.segments)
    assert not any("disagree" in w or "negative" in w for w in corr.warnings)


def test_stray_icmp_error_is_left_out_with_a_warning() -> None:
    corr, _ = _correlate("local-no-endpoint")
    assert [c.protocol for c in corr.connections] == ["tcp"]
    assert any("ICMP error" in w and "10.244.2.0" in w for w in corr.warnings)


def test_icmp_error_travels_towards_the_client() -> None:
    corr, _ = _correlate("no-endpoints")
    icmp = [c for c in corr.connections if c.protocol == "icmp"]
    assert len(icmp) == 1
    # REJECT on node1 answers the client pod: seen on node1 first, then at the client.
    assert list(icmp[0].points) == ["node1", "client"]


def test_shifted_node_clock_keeps_the_path() -> None:
    truth = _truth("clusterip-remote")
    base, _ = _correlate("clusterip-remote")
    path0 = build_path(base, select(base))
    shift = 3_000_000  # node2's clock 3 ms ahead

    def moved(t: Any) -> Any:
        return t + shift

    corr, _ = _correlate("clusterip-remote", {"node2": moved, "web-b": moved})
    path = build_path(corr, select(corr))
    assert _points(path.forward) == _points(path0.forward)
    assert _points(path.forward) == truth["expected_path"]
    assert str(select(corr).backend) == truth["backend"]
    off0 = {c.node: c.offset_ns for c in base.clocks}
    off = {c.node: c.offset_ns for c in corr.clocks}
    bound = {c.node: c.error_bound_ns for c in corr.clocks}
    assert abs((off["node2"] - off0["node2"]) - shift) <= bound["node2"] + 1
    # Hop times are unchanged up to the bound: the offset absorbed the shift.
    for a, b in zip(path0.forward, path.forward, strict=True):
        assert abs(a.t_ns - b.t_ns) <= 2 * bound["node2"] + 1000


@pytest.mark.parametrize(("shift", "ppm"), [(250_000_000, 80.0), (-900_000_000, -100.0)])
def test_shifted_and_drifted_node_clock_keeps_the_path(shift: int, ppm: float) -> None:
    truth = _truth("clusterip-remote")
    base, frames0 = _correlate("clusterip-remote")
    path0 = build_path(base, select(base))
    t0 = int(min(int(f.columns["t_ns"].min()) for f in frames0.values()))

    def moved(t: Any) -> Any:
        # node2's clock: ahead by `shift` and running `ppm` fast, from the capture's start.
        rel = (t.astype("int64") - t0).astype("float64")
        return t + shift + (rel * ppm * 1e-6).round().astype("int64")

    corr, _ = _correlate("clusterip-remote", {"node2": moved, "web-b": moved})
    path = build_path(corr, select(corr))
    assert _points(path.forward) == truth["expected_path"]
    assert _points(path.forward) == _points(path0.forward)
    assert _points(path.reverse) == list(reversed(truth["expected_path"]))
    assert str(select(corr).backend) == truth["backend"]
    assert _same_domain_monotonic(path.forward) and _same_domain_monotonic(path.reverse)
    assert not any(s.negative for s in path.latency.segments)
    crossing = [s for s in path.latency.segments if s.error_bound_ns is not None]
    assert crossing and all((s.error_bound_ns or 0) >= 0 for s in crossing)

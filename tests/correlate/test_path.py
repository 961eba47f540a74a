"""The path of one request: hops, translations and latency against the generator's truth."""

from __future__ import annotations

from tracer.correlate import PointFrames, build_path, correlate, select
from tracer.model import Path
from tracer.testing import synth


def _path(sc: synth.Scenario) -> Path:
    corr = correlate(sc.point_frames())
    return build_path(corr, select(corr))


def test_dnat_path_hops_match_truth() -> None:
    sc = synth.dnat_scenario(offsets={"node-b": 9_000_000})
    path = _path(sc)
    syn, synack = sc.first("syn"), sc.first("syn-ack")
    t0 = syn.true_ns[0]
    assert [(h.point, h.tuple5) for h in path.forward] == [
        (pt, tup) for (pt, _), tup in zip(syn.sightings, syn.tuples, strict=True)
    ]
    # Symmetric delays: the midpoint estimate is exact, so corrected times equal true times.
    assert [h.t_ns for h in path.forward] == [t - t0 for t in syn.true_ns]
    assert [h.t_ns for h in path.reverse] == [t - t0 for t in synack.true_ns]
    assert [h.frame for h in path.forward] == [i for _, i in syn.sightings]
    kinds = [h.translation.kind if h.translation else None for h in path.forward]
    assert kinds == [None, None, "DNAT", None]
    rkinds = [h.translation.kind if h.translation else None for h in path.reverse]
    assert rkinds == [None, None, "un-DNAT", None]
    assert path.request.client == "10.244.1.7:53700"
    assert path.request.destination == "10.96.0.100:80"
    assert path.request.backend == "10.244.2.9:8080"
    assert path.request.start_ns == synth.START_NS + 20_000  # the SYN's first gap
    assert [p.name for p in path.points] == ["client", "node-a", "server"]


def test_dnat_latency_from_truth() -> None:
    sc = synth.dnat_scenario(offsets={"node-b": -6_000_000})
    lat = _path(sc).latency
    syn, synack = sc.first("syn"), sc.first("syn-ack")
    assert lat.connect_ns == synack.true_ns[-1] - syn.true_ns[0]
    req = sc.first("data", "forward")
    resp = [p for p in sc.packets if p.kind == "data" and p.direction == "reverse"]
    assert lat.total_ns == resp[-1].true_ns[-1] - req.true_ns[0]
    assert lat.server_ns == resp[0].true_ns[0] - req.true_ns[-1]
    seg = [(s.from_point, s.to_point, s.first_ns, s.median_ns, s.negative) for s in lat.segments]
    assert seg == [
        ("client", "node-a", 15_000, 15_000, False),
        ("node-a", "server", 120_000, 120_000, False),
    ]
    forward = [p for p in sc.packets if p.direction == "forward"]
    assert all(s.packets == len(forward) for s in lat.segments)


def test_response_in_several_segments_total_ends_at_last() -> None:
    sc = synth.dnat_scenario(response=b"HTTP/1.1 200 OK\r\n\r\n" + b"x" * 4000)
    lat = _path(sc).latency
    req = sc.first("data", "forward")
    resp = [p for p in sc.packets if p.kind == "data" and p.direction == "reverse"]
    assert len(resp) == 3
    assert lat.total_ns == resp[-1].true_ns[-1] - req.true_ns[0]


def test_dns_latency() -> None:
    sc = synth.dns_scenario(offsets={"node-b": 2_500_000})
    path = _path(sc)
    q, a = sc.packets
    assert path.latency.connect_ns is None
    assert path.latency.total_ns == a.true_ns[-1] - q.true_ns[0]
    assert path.latency.server_ns == 300_000
    assert path.request.protocol == "udp"
    assert path.request.backend == "10.244.2.5:53"


def test_nodeport_three_clocks() -> None:
    sc = synth.nodeport_scenario(offsets={"external": 11_000_000, "node-b": -7_000_000})
    path = _path(sc)
    by_node = {c.node: c for c in path.clocks}
    assert set(by_node) == {"node-a", "node-b"}
    assert all(c.reference == "external" for c in path.clocks)
    assert abs(by_node["node-a"].offset_ns - (0 - 11_000_000)) <= by_node["node-a"].error_bound_ns
    assert abs(by_node["node-b"].offset_ns - (-18_000_000)) <= by_node["node-b"].error_bound_ns
    assert path.forward[2].translation is not None
    assert path.forward[2].translation.kind == "DNAT+SNAT"
    assert all(h.t_ns >= 0 for h in path.forward)


def test_negative_segment_is_kept_flagged_and_warned() -> None:
    # The server's clock shifts 1 ms back for requests only: no single offset fits.
    sc = synth.dnat_scenario()
    pkts = {p.id: p for p in sc.packets}
    server = tuple(
        synth.Sighting(
            s.t_ns - (1_000_000 if pkts[s.packet].direction == "forward" else 0),
            s.pkt,
            s.iface,
            s.direction,
            s.vxlan,
            s.packet,
        )
        for s in sc.frames["server"]
    )
    pfs = [
        PointFrames(p, synth.frames_from_specs(server if p.name == "server" else sc.frames[p.name]))
        for p in sc.points
    ]
    corr = correlate(pfs)
    path = build_path(corr, select(corr))
    neg = [s for s in path.latency.segments if s.negative]
    assert [(s.from_point, s.to_point) for s in neg] == [("node-a", "server")]
    assert neg[0].first_ns < 0
    assert any("negative delay" in w for w in path.warnings)

"""What the correlator warns of: points that matched nothing, frames that are not IP, hops
that go back in time (synthetic scenarios whose truth comes from the generator)."""

from __future__ import annotations

import numpy as np

from tracer.correlate import PointFrames, correlate, select
from tracer.pcap.columns import Frames, empty_columns
from tracer.testing import synth


def test_unmatched_point_and_non_ip_are_warned() -> None:
    sc = synth.dnat_scenario()
    other = synth.dns_scenario()
    pfs = sc.point_frames()[:2]
    stray = other.point_frames()[2]
    pfs.append(stray)
    # Two ARP-like frames (no IP) appended to the client's capture.
    client = pfs[0].frames
    extra = empty_columns(2)
    extra["t_ns"][:] = synth.START_NS
    cols = {k: np.concatenate([v, extra[k]]) for k, v in client.columns.items()}
    pfs[0] = PointFrames(
        pfs[0].point, Frames(client.path, client.linktypes, cols, client.encaps, client.addresses)
    )
    corr = correlate(pfs)
    assert "point coredns: no packet matched any other point" in corr.warnings
    assert "point client: 2 frames were not IP" in corr.notes
    assert not any("were not IP" in w for w in corr.warnings)
    assert len(select(corr).journeys) == 10


def test_negative_delay_is_flagged() -> None:
    # A server clock stamped 1 ms too early only on replies looks like travel back in time.
    sc = synth.dnat_scenario(offsets={"node-b": 0})
    frames = dict(sc.frames)
    pkts = {p.id: p for p in sc.packets}
    shifted = tuple(
        synth.Sighting(
            s.t_ns + (1_000_000 if pkts[s.packet].direction == "reverse" else 0),
            s.pkt,
            s.iface,
            s.direction,
            s.vxlan,
            s.packet,
        )
        for s in frames["server"]
    )
    pfs = [
        PointFrames(p, synth.frames_from_specs(shifted if p.name == "server" else frames[p.name]))
        for p in sc.points
    ]
    corr = correlate(pfs)
    assert any("negative one-way delay" in w for w in corr.warnings)

"""Connections learned from flows: a contradicting match is split, a reused port is a new
connection (synthetic scenarios whose truth comes from the generator)."""

from __future__ import annotations

from tracer.correlate import PointFrames, correlate
from tracer.testing import synth


def test_contradicting_match_is_split_not_merged() -> None:
    # Two DNS clients send byte-identical queries (same txid, same name) at the same time:
    # the signatures collide at the node, but each client's flow must stay its own connection.
    a = synth.dns_scenario(txid=0x1111)
    b = synth.dns_scenario(txid=0x1111, start_ns=synth.START_NS + 3_000)
    pfs = []
    for p in a.points:
        rows_b = tuple(
            synth.Sighting(
                s.t_ns,
                _moved(s.pkt),
                s.iface,
                s.direction,
                s.vxlan,
                s.packet + 100,
            )
            for s in b.frames[p.name]
        )
        merged = tuple(sorted(a.frames[p.name] + rows_b, key=lambda s: s.t_ns))
        pfs.append(PointFrames(p, synth.frames_from_specs(merged, p.name)))
    corr = correlate(pfs)
    clients = {c.client.src.ip for c in corr.connections}
    assert clients == {"10.244.1.7", "10.244.1.8"}
    for c in corr.connections:
        learned = {(pt, tup) for pt, tup in c.tuples}
        for j in c.journeys:
            for o in j.observations:
                tup = o.tuple5 if j.direction == "forward" else o.tuple5.reversed()
                assert (o.point, tup) in learned
                assert c.client.src.ip in (tup.src.ip, tup.dst.ip)


def _moved(pkt: synth.Pkt) -> synth.Pkt:
    from dataclasses import replace

    swap = {"10.244.1.7": "10.244.1.8"}
    return replace(pkt, src=swap.get(pkt.src, pkt.src), dst=swap.get(pkt.dst, pkt.dst))


def test_port_reuse_starts_a_new_connection() -> None:
    # The same client port twice, a second apart: two SYNs with different ISNs.
    a = synth.dnat_scenario(seed=1)
    b = synth.dnat_scenario(seed=2, start_ns=synth.START_NS + 1_000_000_000)
    pfs = [
        PointFrames(p, synth.frames_from_specs(a.frames[p.name] + b.frames[p.name], p.name))
        for p in a.points
    ]
    corr = correlate(pfs)
    assert len(corr) == 2
    assert [len(c.journeys) for c in corr.connections] == [10, 10]
    assert corr.connections[0].client == corr.connections[1].client

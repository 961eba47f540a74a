"""Bulk connections are distinct, interleaved and in capture order."""

from __future__ import annotations

from tracer.testing import synth


def test_bulk_dnat_connections_are_distinct() -> None:
    points, frames = synth.bulk_dnat(50, seed=3)
    assert [p.name for p in points] == ["client", "node-a", "server"]
    assert {k: len(v) for k, v in frames.items()} == {"client": 500, "node-a": 1000, "server": 500}
    c = frames["client"].columns
    syn = c["tcp_flags"] == 0x02
    assert len(set(zip(c["src"][syn].tolist(), c["sport"][syn].tolist(), strict=True))) == 50
    assert (c["t_ns"][1:] >= c["t_ns"][:-1]).all()

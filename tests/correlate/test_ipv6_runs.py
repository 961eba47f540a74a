"""IPv6 lab runs (pcaps/*6, recorded in the dual-stack lab): traced with the right DNAT/SNAT,
clocks within their bound, no negative hop, the rules walked from ip6tables-save.

The truth is each run's manifest (`extra.lab`: the lab's configuration and the node's conntrack
entry read from the kernel). All namespaces ran on one machine: the true clock offset is zero,
and a shift added to node2's captures is the new truth.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from tests.correlate.test_lab_runs import PCAPS, _correlate, _points, _truth
from tracer.correlate import build_path, select
from tracer.explain.evidence import collect_evidence
from tracer.explain.facts import read_node_facts
from tracer.inputs import load_run

RUNS = ("clusterip6", "clusterip6-remote", "nodeport6", "no-endpoints6")
pytestmark = pytest.mark.skipif(
    not all((PCAPS / r).is_dir() for r in RUNS), reason="no IPv6 lab runs"
)


@pytest.mark.parametrize("run", RUNS)
def test_ipv6_run_is_traced_with_the_kernels_translations(run: str) -> None:
    truth = _truth(run)
    assert truth["outcome"] == truth["expected_outcome"]
    corr, _ = _correlate(run)
    conn = select(corr)
    path = build_path(corr, conn)
    assert ":" in conn.client.dst.ip, "the IPv6 request, not the IPv4 DNS lookup or chatter"
    assert _points(path.forward) == truth["expected_path"]
    # Clocks: true offset 0; every estimate holds it within its bound.
    for c in corr.clocks:
        assert abs(c.offset_ns) <= c.error_bound_ns + 1, c
    assert not any("negative one-way delay" in w for w in corr.warnings)
    assert not any(h.note and "negative" in h.note for h in (*path.forward, *path.reverse))
    assert not any(s.negative for s in path.latency.segments)
    ct = truth.get("conntrack")
    dnat = [h.translation for h in path.forward if h.translation and "DNAT" in h.translation.kind]
    if truth["backend"]:
        assert ct is not None and ct["dnat_to"] == truth["backend"]
        (t,) = dnat
        assert str(t.before.dst) == truth["frontend"] and str(t.after.dst) == ct["dnat_to"]
        assert str(conn.backend) == ct["dnat_to"]
    else:
        assert dnat == []
    snat = [h.translation for h in path.forward if h.translation and "SNAT" in h.translation.kind]
    if truth["snat_node"]:
        (t,) = snat
        assert str(t.after.src) == ct["snat_to"]
    else:
        assert snat == []


@pytest.mark.parametrize("shift", [250_000_000, -900_000_000])
def test_ipv6_remote_run_with_a_shifted_node_clock(shift: int) -> None:
    truth = _truth("clusterip6-remote")

    def moved(t: Any) -> Any:
        return t + shift

    corr, _ = _correlate("clusterip6-remote", {"node2": moved, "web-b": moved})
    path = build_path(corr, select(corr))
    (clock,) = corr.clocks
    assert clock.node == "node2" and abs(clock.offset_ns - shift) <= clock.error_bound_ns + 1
    assert clock.error_bound_ns < 100_000
    assert _points(path.forward) == truth["expected_path"]
    assert _points(path.reverse) == list(reversed(truth["expected_path"]))
    assert not any(s.negative for s in path.latency.segments)


def test_ipv6_chatter_in_the_runs_is_never_a_clock_sample() -> None:
    """The dual-stack lab's captures hold real neighbour discovery and MLD: none of it is
    matched across two clock domains."""
    corr, frames = _correlate("nodeport6")
    assert any(
        bool(np.isin(np.asarray(f.columns["icmp_type"]), (133, 135, 136, 143)).any())
        for f in frames.values()
    ), "the run has no IPv6 chatter to test with"
    domain = {p.name: (p.node or p.name) for p in corr.points}
    for conn in corr.connections:
        if conn.protocol != "icmpv6":
            continue
        for j in conn.journeys:
            types = {o.point for o in j.observations}
            assert len({domain[p] for p in types}) == 1, (conn.client, types)


@pytest.mark.parametrize("run", ["clusterip6-remote", "nodeport6", "no-endpoints6"])
def test_ipv6_rules_are_walked_from_ip6tables_save(run: str) -> None:
    corr, _ = _correlate(run)
    path = build_path(corr, select(corr))
    facts = read_node_facts(PCAPS / run, ["node1", "node2"])
    ev = collect_evidence(path, facts)
    walked = [e for e in ev.rewrites if e.rules_source]
    assert walked and all(e.rules_source == "nodes/node1/ip6tables-save.txt" for e in walked)
    if run == "no-endpoints6":
        assert walked[0].verdict == "REJECT"
    else:
        assert walked[0].chosen is not None and str(walked[0].chosen) == _truth(run)["backend"]


def test_ipv4_rules_alone_are_never_walked_for_an_ipv6_packet(tmp_path: Any) -> None:
    import shutil

    run = tmp_path / "run"
    shutil.copytree(PCAPS / "clusterip6-remote", run)
    (run / "nodes" / "node1" / "ip6tables-save.txt").unlink()
    loaded = load_run(str(run))
    assert loaded.points
    corr, _ = _correlate("clusterip6-remote")
    path = build_path(corr, select(corr))
    facts = read_node_facts(run, ["node1", "node2"])
    assert facts["node1"].rules is not None and facts["node1"].rules6 is None
    ev = collect_evidence(path, facts)
    assert not [e for e in ev.rewrites if e.rules_source], (
        "walked an IPv6 packet through IPv4 rules"
    )

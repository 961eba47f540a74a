"""Scenario definitions are consistent with the topology and the Services they name."""

from __future__ import annotations

import pytest

from tracer.lab.scenarios import scenarios
from tracer.lab.services import all_services
from tracer.lab.topology import plan_topology

TOPO = plan_topology()
ALL = scenarios(TOPO)


def test_the_required_scenarios_exist() -> None:
    assert set(ALL) == {
        "clusterip", "clusterip-remote", "nodeport", "nodeport-local", "ingress",
        "ingress-hostnet", "no-endpoints", "stale-endpoint", "local-no-endpoint",
        "dns-nxdomain", "slow-server", "drop", "mixed", "mesh", "ebpf-socket-lb",
    }  # fmt: skip


@pytest.mark.parametrize("name", sorted(ALL))
def test_path_points_are_captured(name: str) -> None:
    sc = ALL[name]
    captured = {p.name for p in sc.points}
    assert set(sc.path) <= captured
    assert sc.points[0].name == sc.path[0]
    assert sc.points[0].role == "client"
    assert "--max-time" in sc.command


@pytest.mark.parametrize("name", sorted(ALL))
def test_backend_is_an_endpoint_of_the_service(name: str) -> None:
    sc = ALL[name]
    if not sc.backend:
        return
    svc = {f"{s.namespace}/{s.name}": s for s in all_services(TOPO)}[sc.service or ""]
    ip, _, port = sc.backend.rpartition(":")
    assert ip in {e.ip for e in svc.endpoints}
    assert int(port) in {p.target_port for p in svc.ports}


def test_meshed_pods_are_captured_on_any() -> None:
    sc = ALL["mesh"]
    assert sc.sidecars
    for p in sc.points:
        if p.pod in sc.sidecars:
            assert p.interface == "any"

"""Scenario definitions are consistent with the topology and the Services they name."""

from __future__ import annotations

import pytest

from tracer.lab.lab import outcome_of, parse_conntrack_entry
from tracer.lab.scenarios import (
    all_services,
    cluster_services,
    dns_records,
    scenarios,
    socket_lb_services,
)
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


def test_dns_names_resolve_to_cluster_ips() -> None:
    recs = dns_records(TOPO)
    assert recs["web.default.svc.cluster.local"] == "10.96.0.100"
    assert recs["kube-dns.kube-system.svc.cluster.local"] == "10.96.0.10"


def test_conntrack_parse() -> None:
    text = (
        "tcp 6 431997 ESTABLISHED src=203.0.113.2 dst=192.168.0.2 sport=45752 dport=3003 "
        "src=10.180.0.3 dst=10.180.0.254 sport=80 dport=16903 [ASSURED] mark=0 use=1\n"
    )
    e = parse_conntrack_entry(text, "192.168.0.2", 3003, "tcp")
    assert e is not None
    assert e["dnat_to"] == "10.180.0.3:80" and e["snat_to"] == "10.180.0.254:16903"
    assert parse_conntrack_entry(text, "192.168.0.2", 80, "tcp") is None


def test_outcomes() -> None:
    assert outcome_of(0, "hi\nHTTP 200 connect=0.1") == "http-200"
    assert outcome_of(7, "* connect to 10.96.0.104 port 80 failed: Connection refused") == "refused"
    assert outcome_of(28, "timed out") == "timeout"
    assert outcome_of(6, "Could not resolve host") == "nxdomain"


def test_socket_lb_services_get_no_kube_proxy_rules_but_dns_and_the_manifest() -> None:
    from tracer.lab.kubeproxy import iptables_restore
    from tracer.lab.lab import _run_services, node_info

    ebpf = socket_lb_services(TOPO)
    assert ebpf and not {s.name for s in ebpf} & {s.name for s in cluster_services(TOPO)}
    rules = iptables_restore(cluster_services(TOPO), node_info(TOPO, "node1"))
    for s in ebpf:
        assert s.cluster_ip not in rules
        assert dns_records(TOPO)[f"{s.name}.{s.namespace}.svc.cluster.local"] == s.cluster_ip
        assert s.name in {r.name for r in _run_services(TOPO)}


def test_meshed_pods_are_captured_on_any() -> None:
    sc = ALL["mesh"]
    assert sc.sidecars
    for p in sc.points:
        if p.pod in sc.sidecars:
            assert p.interface == "any"

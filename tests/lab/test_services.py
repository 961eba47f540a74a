"""The lab cluster's Services: their DNS names, and who serves each (kube-proxy or the socket
load-balancer)."""

from __future__ import annotations

from tracer.lab.kubeproxy import iptables_restore
from tracer.lab.lab import node_info
from tracer.lab.services import cluster_services, dns_records, socket_lb_services
from tracer.lab.topology import plan_topology
from tracer.lab.truth import run_services

TOPO = plan_topology()


def test_dns_names_resolve_to_cluster_ips() -> None:
    recs = dns_records(TOPO)
    assert recs["web.default.svc.cluster.local"] == "10.96.0.100"
    assert recs["kube-dns.kube-system.svc.cluster.local"] == "10.96.0.10"


def test_socket_lb_services_get_no_kube_proxy_rules_but_dns_and_the_manifest() -> None:
    ebpf = socket_lb_services(TOPO)
    assert ebpf and not {s.name for s in ebpf} & {s.name for s in cluster_services(TOPO)}
    rules = iptables_restore(cluster_services(TOPO), node_info(TOPO, "node1"))
    for s in ebpf:
        assert s.cluster_ip not in rules
        assert dns_records(TOPO)[f"{s.name}.{s.namespace}.svc.cluster.local"] == s.cluster_ip
        assert s.name in {r.name for r in run_services(TOPO)}

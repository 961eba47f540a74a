"""Packets and their expected fate, derived from the Service configuration in make_data.py.

The expectations come from the Services (endpoints, traffic policies, source ranges) and
kube-proxy's documented behaviour, never from the walker's output.
"""

from __future__ import annotations

from dataclasses import dataclass

from tests.rules.make_data import CLUSTER_CIDR, NODE_IP, SERVICES, Svc


def svc(name: str) -> Svc:
    return next(s for s in SERVICES if s.name == name)


@dataclass(frozen=True)
class Scenario:
    id: str
    proto: str
    src: str
    dst: str
    dport: int
    entry: str
    verdict: str
    endpoints: tuple[str, ...]  # each equally likely
    masquerade: bool
    affinity: bool = False


POD = "10.244.1.7"  # a client pod on this node, inside CLUSTER_CIDR
ALLOWED = "203.0.113.5"  # inside default/lb's loadBalancerSourceRanges
BLOCKED = "198.51.100.7"  # outside them

web, api, npc, npl, npr = (
    svc("web"),
    svc("api"),
    svc("np-cluster"),
    svc("np-local"),
    svc("np-remote"),
)
sticky, empty, lb, dns = svc("sticky"), svc("empty"), svc("lb"), svc("kube-dns")

SCENARIOS: tuple[Scenario, ...] = (
    Scenario(
        "clusterip-3-from-pod",
        "tcp",
        POD,
        web.cluster_ip,
        80,
        "from_pod",
        "DNAT",
        web.endpoints,
        False,
    ),
    Scenario(
        "clusterip-3-from-node",
        "tcp",
        NODE_IP,
        web.cluster_ip,
        80,
        "local",
        "DNAT",
        web.endpoints,
        True,
    ),
    Scenario(
        "clusterip-1-from-pod",
        "tcp",
        POD,
        api.cluster_ip,
        443,
        "from_pod",
        "DNAT",
        api.endpoints,
        False,
    ),
    Scenario(
        "clusterip-udp", "udp", POD, dns.cluster_ip, 53, "from_pod", "DNAT", dns.endpoints, False
    ),
    Scenario(
        "hairpin",
        "tcp",
        api.endpoints[0].split(":")[0],
        api.cluster_ip,
        443,
        "from_pod",
        "DNAT",
        api.endpoints,
        True,
    ),
    Scenario(
        "nodeport-cluster",
        "tcp",
        ALLOWED,
        NODE_IP,
        npc.node_port,
        "external",
        "DNAT",
        npc.endpoints,
        True,
    ),
    Scenario(
        "nodeport-local",
        "tcp",
        ALLOWED,
        NODE_IP,
        npl.node_port,
        "external",
        "DNAT",
        npl.local_endpoints,
        False,
    ),
    Scenario(
        "nodeport-local-from-pod",
        "tcp",
        POD,
        NODE_IP,
        npl.node_port,
        "from_pod",
        "DNAT",
        npl.endpoints,
        False,
    ),
    Scenario(
        "nodeport-local-no-local-endpoint",
        "tcp",
        ALLOWED,
        NODE_IP,
        npr.node_port,
        "external",
        "DROP",
        (),
        False,
    ),
    Scenario(
        "affinity",
        "tcp",
        POD,
        sticky.cluster_ip,
        80,
        "from_pod",
        "DNAT",
        sticky.endpoints,
        False,
        affinity=True,
    ),
    Scenario("no-endpoints", "tcp", POD, empty.cluster_ip, 80, "from_pod", "REJECT", (), False),
    Scenario(
        "lb-allowed", "tcp", ALLOWED, lb.lb_ips[0], 80, "external", "DNAT", lb.endpoints, True
    ),
    Scenario("lb-blocked", "tcp", BLOCKED, lb.lb_ips[0], 80, "external", "DROP", (), False),
    Scenario("not-a-service", "tcp", POD, "10.244.2.5", 80, "from_pod", "NO-MATCH", (), False),
)

assert CLUSTER_CIDR == "10.244.0.0/16"

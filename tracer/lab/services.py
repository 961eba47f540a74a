"""The lab cluster's Services, as frozen data: their ClusterIPs, ports and endpoints (the pods of
the lab's topology), and the cluster's and the outside world's DNS zones.

Pure. kube-proxy's rules (tracer.lab.kubeproxy), the socket load-balancer's map, the DNS servers,
the API stand-in's Services and the scenarios' ground truth are all made from these.
"""

from __future__ import annotations

from tracer.lab.kubeproxy import Endpoint, Service, ServicePort
from tracer.lab.topology import Topology

WEB_PORT = 8080
SLOW_DELAY_S = 0.2
INGRESS_HOST = "web.example.com"
NODEPORT_CLUSTER = 30080
NODEPORT_LOCAL = 30081
NODEPORT_INGRESS = 30090
KUBE_DNS_IP = "10.96.0.10"
SOCKET_LB_IP = "10.96.0.110"  # Service web-ebpf: served by the socket load-balancer only


def _ep(topo: Topology, pod: str) -> Endpoint:
    p = topo.pod(pod)
    return Endpoint(ip=p.ip, node=p.node, pod=f"{p.namespace}/{p.name}")


def _ep6(topo: Topology, pod: str) -> Endpoint:
    p = topo.pod(pod)
    return Endpoint(ip=p.ip6, node=p.node, pod=f"{p.namespace}/{p.name}")


NODEPORT_V6 = 30082
# IPv6 Services of the dual-stack lab (single-stack IPv6, from the IPv6 Service CIDR).
WEB6_IPS = {
    "web6": "fd00:10:96::100",
    "web6-remote": "fd00:10:96::101",
    "web6-np": "fd00:10:96::102",
    "web6-empty": "fd00:10:96::104",
}


def ipv6_services(topo: Topology) -> tuple[Service, ...]:
    """The IPv6 Services of a dual-stack lab (none otherwise): kube-proxy's IPv6 proxier on
    every node writes ip6tables (or nft ip6) rules for them."""
    if not topo.dual_stack:
        return ()
    return (
        _web("web6", WEB6_IPS["web6"], (_ep6(topo, "web-a"),)),
        _web("web6-remote", WEB6_IPS["web6-remote"], (_ep6(topo, "web-b"),)),
        _web("web6-np", WEB6_IPS["web6-np"], (_ep6(topo, "web-b"),), node_port=NODEPORT_V6),
        _web("web6-empty", WEB6_IPS["web6-empty"], ()),
    )


def _web(name: str, ip: str, eps: tuple[Endpoint, ...], **kw: object) -> Service:
    node_port = kw.pop("node_port", None)
    return Service(
        namespace="default",
        name=name,
        cluster_ip=ip,
        ports=(
            ServicePort(
                port=80,
                target_port=WEB_PORT,
                protocol="TCP",
                name="http",
                node_port=node_port,  # type: ignore[arg-type]
            ),
        ),
        endpoints=eps,
        **kw,  # type: ignore[arg-type]
    )


def cluster_services(topo: Topology) -> tuple[Service, ...]:
    """Every Service of the lab cluster; kube-proxy on every node gets rules for all of them
    (each family's proxier those of its family)."""
    return (*_ipv4_services(topo), *ipv6_services(topo))


def _ipv4_services(topo: Topology) -> tuple[Service, ...]:
    node2 = topo.nodes[1]
    return (
        Service(
            namespace="kube-system",
            name="kube-dns",
            cluster_ip=KUBE_DNS_IP,
            ports=(
                ServicePort(port=53, target_port=53, protocol="UDP", name="dns"),
                ServicePort(port=53, target_port=53, protocol="TCP", name="dns-tcp"),
            ),
            endpoints=(_ep(topo, "coredns"),),
        ),
        _web("web", "10.96.0.100", (_ep(topo, "web-a"),)),
        _web("web-remote", "10.96.0.101", (_ep(topo, "web-b"),)),
        _web("web-np", "10.96.0.102", (_ep(topo, "web-b"),), node_port=NODEPORT_CLUSTER),
        _web(
            "web-local",
            "10.96.0.103",
            (_ep(topo, "web-b"),),
            node_port=NODEPORT_LOCAL,
            external_traffic_policy="Local",
        ),
        _web("web-empty", "10.96.0.104", ()),
        # The pod behind this endpoint is gone: its address is in node2's pod CIDR, unassigned.
        _web(
            "web-stale",
            "10.96.0.105",
            (
                Endpoint(
                    ip=node2.pod_cidr.replace(".0/24", ".9"), node=node2.name, pod="default/web-c"
                ),
            ),
        ),
        _web("web-slow", "10.96.0.106", (_ep(topo, "slow"),)),
        Service(
            namespace="ingress-nginx",
            name="ingress-nginx-controller",
            cluster_ip="10.96.0.200",
            ports=(
                ServicePort(
                    port=80, target_port=80, protocol="TCP", name="http", node_port=NODEPORT_INGRESS
                ),
            ),
            endpoints=(_ep(topo, "ingress"),),
        ),
    )


def socket_lb_services(topo: Topology) -> tuple[Service, ...]:
    """Services an eBPF socket load-balancer serves instead of kube-proxy: they are in the API
    (and the manifest, and DNS) but kube-proxy writes no rule for them."""
    return (_web("web-ebpf", SOCKET_LB_IP, (_ep(topo, "web-b"),)),)


def all_services(topo: Topology) -> tuple[Service, ...]:
    """Every Service the cluster's API knows, whoever implements it."""
    return (*cluster_services(topo), *socket_lb_services(topo))


def dns_records(topo: Topology) -> dict[str, str]:
    """The cluster DNS zone: <svc>.<ns>.svc.cluster.local, plus the ingress host name."""
    recs = {f"{s.name}.{s.namespace}.svc.cluster.local": s.cluster_ip for s in all_services(topo)}
    recs[INGRESS_HOST] = topo.nodes[0].underlay_ip
    return recs


def external_dns_records(topo: Topology) -> dict[str, str]:
    """The outside world's DNS: the ingress host name points at node1."""
    return {INGRESS_HOST: topo.nodes[0].underlay_ip}

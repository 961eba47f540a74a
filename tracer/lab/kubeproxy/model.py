"""The parts of Services, their endpoints and the node that kube-proxy turns into rules. Pure."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ServicePort:
    """One port of a Service (`spec.ports[]`)."""

    port: int
    target_port: int
    protocol: str = "TCP"
    name: str = ""
    node_port: int | None = None

    @property
    def proto(self) -> str:
        """The protocol as iptables and nft spell it (lower case)."""
        return self.protocol.lower()


@dataclass(frozen=True)
class Endpoint:
    """One endpoint address of a Service (EndpointSlice `endpoints[]`)."""

    ip: str
    node: str | None = None
    ready: bool = True
    pod: str | None = None


@dataclass(frozen=True)
class Service:
    """The parts of a Service (and its EndpointSlices) that kube-proxy turns into rules."""

    namespace: str
    name: str
    cluster_ip: str
    ports: tuple[ServicePort, ...]
    endpoints: tuple[Endpoint, ...] = ()
    external_traffic_policy: str = "Cluster"  # Cluster | Local
    session_affinity: str = "None"  # None | ClientIP
    affinity_timeout: int = 10800
    external_ips: tuple[str, ...] = ()
    load_balancer_ips: tuple[str, ...] = ()
    load_balancer_source_ranges: tuple[str, ...] = ()

    @property
    def external_local(self) -> bool:
        return self.external_traffic_policy == "Local"

    def ready_endpoints(self) -> tuple[Endpoint, ...]:
        return tuple(e for e in self.endpoints if e.ready)

    @property
    def externally_accessible(self) -> bool:
        return bool(
            self.external_ips or self.load_balancer_ips or any(p.node_port for p in self.ports)
        )


@dataclass(frozen=True)
class NodeInfo:
    """The node kube-proxy runs on."""

    name: str
    ips: tuple[str, ...]
    pod_cidr: str
    cluster_cidr: str
    service_cidr: str = "10.96.0.0/12"

    @property
    def ipv6(self) -> bool:
        """The family of this proxier: a dual-stack node runs one per family."""
        return ":" in self.service_cidr


@dataclass(frozen=True)
class ProxyOptions:
    """kube-proxy flags and machine capabilities that change the rule text."""

    masquerade_bit: int = 14
    random_fully: bool = True  # HasRandomFully(): iptables >= 1.6.2
    localhost_nodeports: bool = True  # --iptables-localhost-nodeports (default true)
    nfacct: bool = False  # nfacct counters present (recent releases, with nfnetlink_acct)
    masquerade_all: bool = False
    conntrack_tcp_liberal: bool = False

    @property
    def mark(self) -> str:
        return f"{1 << self.masquerade_bit:#x}"


def categorize(svc: Service, node: NodeInfo) -> tuple[list[Endpoint], list[Endpoint]]:
    """(cluster endpoints, local endpoints), as proxy.CategorizeEndpoints with ready endpoints."""
    ready = list(svc.ready_endpoints())
    return ready, [e for e in ready if e.node == node.name]

"""What a capture is about, as tracer.kube resolves it from `--from` and `--to`: the client pod (or
an external client), the Services with their endpoints and nodes, DNS, Ingress controllers and
load-balancer agents. Pure data.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from tracer.rundir import Service

# Containers that mark a meshed pod: the sidecar itself or the init container that wrote its
# capture rules.
MESH_CONTAINERS: Mapping[str, tuple[str, ...]] = {
    "istio": ("istio-proxy", "istio-init", "istio-validation"),
    "linkerd": ("linkerd-proxy", "linkerd-init"),
}


@dataclass(frozen=True)
class PodTarget:
    namespace: str
    name: str
    ip: str
    node: str
    containers: tuple[str, ...] = ()
    host_network: bool = False
    init_containers: tuple[str, ...] = ()

    @property
    def mesh(self) -> str | None:
        """The service mesh whose sidecar this pod runs ("istio", "linkerd"), or None."""
        names = set(self.containers) | set(self.init_containers)
        for mesh, marks in MESH_CONTAINERS.items():
            if names & set(marks):
                return mesh
        return None


@dataclass(frozen=True)
class NodeTarget:
    name: str
    ip: str


@dataclass(frozen=True)
class Targets:
    """Everything resolved from `--from` and `--to`; built by tracer.kube, consumed here.

    `client` is None for `--from external`. `extra_ips` are addresses the request goes to that
    are neither pods nor cluster IPs (a URL's IP, an Ingress load-balancer address).
    """

    destination: str
    client: PodTarget | None
    servers: tuple[PodTarget, ...] = ()
    services: tuple[Service, ...] = ()
    nodes: tuple[NodeTarget, ...] = ()
    dns: Service | None = None
    dns_pods: tuple[PodTarget, ...] = ()
    ingress_pods: tuple[PodTarget, ...] = ()
    extra_ips: tuple[str, ...] = ()
    extra_ports: tuple[int, ...] = ()
    uses_name: bool = False
    # eBPF load-balancer agents (Cilium) on the nodes of the path: their view is read.
    lb_agents: tuple[PodTarget, ...] = ()

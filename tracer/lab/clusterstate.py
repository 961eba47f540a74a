"""The lab as a ClusterState: nodes, pods, Services and the Ingress of the namespace lab.

Reads the lab's topology (from its state file, or one given) and its Service model, for the
stand-in API (tracer.apiserver). Pods run their commands through `ip netns exec pt-<node>-<pod>`
and host-network (node) pods through `ip netns exec pt-<node>` (NetnsExecBackend). Changes
nothing; starting and stopping the API for a running lab is tracer.lab.api's job.
"""

from __future__ import annotations

from pathlib import Path

from tracer.apiserver.state import (
    ClusterState,
    EndpointSpec,
    IngressSpec,
    NodeSpec,
    PodSpec,
    ServicePortSpec,
    ServiceSpec,
)
from tracer.lab.services import INGRESS_HOST, cluster_services
from tracer.lab.topology import STATE_DIR, Topology, require_up

# Labels real clusters put on these pods, so that resolution finds them the same way.
_POD_LABELS = {
    "coredns": {"k8s-app": "kube-dns"},
    "ingress": {"app.kubernetes.io/name": "ingress-nginx"},
}
# The lab's nginx ingress proxies its host to Service web-remote (see tracer.lab.lab.workloads).
INGRESS_NAME = "web"
INGRESS_SERVICE = "web-remote"


def _log_files(state_dir: Path, pod: str) -> tuple[str, ...]:
    """Where the lab's workload in `pod` writes its output (tracer.lab.lab.start_workload)."""
    if pod == "ingress":
        d = state_dir / "nginx-ingress"
        return (
            str(state_dir / "logs" / "ingress.log"),
            str(d / "error.log"),
            str(d / "access.log"),
        )
    return (str(state_dir / "logs" / f"{pod}.log"),)


def lab_cluster_state(topology: Topology | None = None) -> ClusterState:
    """The running lab (or `topology`, planned or built) as a ClusterState."""
    if topology is None:
        _, topology = require_up()
    nodes = tuple(
        NodeSpec(n.name, n.underlay_ip, netns=n.netns, pod_cidr=n.pod_cidr) for n in topology.nodes
    )
    pods = tuple(
        PodSpec(
            p.namespace,
            p.name,
            p.node,
            p.ip,
            netns=p.netns,
            labels={"app": p.name, **_POD_LABELS.get(p.name, {})},
            log_files=_log_files(STATE_DIR, p.name),
        )
        for p in topology.pods
    )
    services = []
    for s in cluster_services(topology):
        # Every endpoint the lab's configuration lists, as the endpoint controller wrote it, even
        # one whose pod is gone (web-stale): kube-proxy's rules are made from this same list.
        endpoints = tuple(
            EndpointSpec(
                e.ip,
                e.node,
                e.pod.split("/", 1)[1] if e.pod and e.pod.startswith(f"{s.namespace}/") else None,
                e.ready,
            )
            for e in s.endpoints
        )
        ports = tuple(
            ServicePortSpec(p.port, p.target_port, p.protocol, p.name, p.node_port) for p in s.ports
        )
        services.append(
            ServiceSpec(
                s.namespace,
                s.name,
                s.cluster_ip,
                ports,
                endpoints,
                type="NodePort" if any(p.node_port for p in s.ports) else "ClusterIP",
                external_traffic_policy=s.external_traffic_policy,
            )
        )
    ingresses = (IngressSpec("default", INGRESS_NAME, INGRESS_HOST, INGRESS_SERVICE, 80),)
    return ClusterState(nodes=nodes, pods=pods, services=tuple(services), ingresses=ingresses)

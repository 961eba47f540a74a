"""The Services and node the kube-proxy tests share (values from kube-proxy's own tests)."""

from __future__ import annotations

from tracer.lab import kubeproxy as kp

NODE = kp.NodeInfo(
    name="node1", ips=("192.168.0.2",), pod_cidr="10.0.1.0/24", cluster_cidr="10.0.0.0/8",
    service_cidr="172.30.0.0/16",
)  # fmt: skip


def svc1(**kw: object) -> kp.Service:
    return kp.Service(
        namespace="ns1",
        name="svc1",
        cluster_ip="172.30.0.41",
        ports=(kp.ServicePort(port=80, target_port=80, name="p80"),),
        endpoints=(kp.Endpoint("10.180.0.1", node="node1"),),
        **kw,  # type: ignore[arg-type]
    )

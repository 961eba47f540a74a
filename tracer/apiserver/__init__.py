"""A local stand-in for the Kubernetes API server, so that `pathtrace capture` runs on the lab.

`serve(state, exec_backend)` starts it on 127.0.0.1 over HTTPS (a CA made at start) with a
random bearer token and writes a kubeconfig for it; the real kubectl and kubernetes client talk
to it over HTTPS and WebSocket unchanged.
"""

from tracer.apiserver.server import Server, serve
from tracer.apiserver.state import (
    ClusterState,
    EndpointSpec,
    ExecBackend,
    ExecTarget,
    IngressSpec,
    LocalExecBackend,
    NetnsExecBackend,
    NodeSpec,
    PodSpec,
    ServicePortSpec,
    ServiceSpec,
)

__all__ = [
    "ClusterState",
    "EndpointSpec",
    "ExecBackend",
    "ExecTarget",
    "IngressSpec",
    "LocalExecBackend",
    "NetnsExecBackend",
    "NodeSpec",
    "PodSpec",
    "Server",
    "ServicePortSpec",
    "ServiceSpec",
    "serve",
]

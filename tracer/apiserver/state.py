"""What the stand-in API server serves: a small description of a cluster, and how to exec in it.

`ClusterState` lists nodes, namespaces (with their Pod Security labels), pods (IP, node,
containers and the network namespace to exec in), Services with their endpoints, and Ingresses.
`ExecBackend` runs an argv in a pod's or node's network namespace. This module holds data and
the two small interfaces; it renders nothing to JSON (tracer.apiserver.objects does).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class NodeSpec:
    name: str
    internal_ip: str
    netns: str | None = None  # the node's network namespace (lab: pt-<node>)
    pod_cidr: str | None = None


@dataclass(frozen=True)
class PodSpec:
    namespace: str
    name: str
    node: str
    ip: str
    netns: str | None = None  # lab: pt-<node>-<pod>
    containers: tuple[str, ...] = ("app",)
    labels: Mapping[str, str] = field(default_factory=dict)
    image: str = "registry.k8s.io/pause:3.9"
    host_network: bool = False
    # Files holding the workload's output, served as the pod's log (the lab's process logs).
    log_files: tuple[str, ...] = ()


@dataclass(frozen=True)
class ServicePortSpec:
    port: int
    target_port: int
    protocol: str = "TCP"
    name: str = ""
    node_port: int | None = None


@dataclass(frozen=True)
class EndpointSpec:
    """An EndpointSlice endpoint given by its address, as the endpoint controller last wrote it:
    its pod may be gone (a stale endpoint) and it is listed all the same."""

    ip: str
    node: str | None = None
    pod: str | None = None  # pod name in the Service's namespace (targetRef)
    ready: bool = True


@dataclass(frozen=True)
class ServiceSpec:
    namespace: str
    name: str
    cluster_ip: str
    ports: tuple[ServicePortSpec, ...]
    # Pod names in the same namespace (address and node from the pod), or endpoints by address.
    endpoints: tuple[str | EndpointSpec, ...] = ()
    type: str = "ClusterIP"
    selector: Mapping[str, str] = field(default_factory=dict)
    external_traffic_policy: str = "Cluster"


@dataclass(frozen=True)
class IngressSpec:
    namespace: str
    name: str
    host: str
    service: str
    port: int
    path: str = "/"
    class_name: str = "nginx"


@dataclass(frozen=True)
class ClusterState:
    """A whole cluster as the stand-in serves it.

    `namespaces` maps each namespace to its labels (Pod Security: `pod-security.kubernetes.io/
    enforce`); a namespace used by a pod or service but absent here exists with no labels.
    """

    nodes: tuple[NodeSpec, ...]
    pods: tuple[PodSpec, ...] = ()
    services: tuple[ServiceSpec, ...] = ()
    ingresses: tuple[IngressSpec, ...] = ()
    namespaces: Mapping[str, Mapping[str, str]] = field(default_factory=dict)

    def namespace_names(self) -> list[str]:
        names = set(self.namespaces) | {"default", "kube-system"}
        names |= {p.namespace for p in self.pods} | {s.namespace for s in self.services}
        return sorted(names)


@dataclass(frozen=True)
class ExecTarget:
    """Where a command runs: a pod's container, or a node's host network."""

    netns: str | None
    namespace: str | None = None
    pod: str | None = None
    container: str | None = None
    node: str | None = None


class ExecBackend(Protocol):
    """Starts argv where `target` says; the server pumps the pipes and waits for the exit code."""

    def start(self, target: ExecTarget, argv: Sequence[str]) -> subprocess.Popen[bytes]: ...


def _popen(argv: Sequence[str], env: Mapping[str, str] | None = None) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        list(argv),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=dict(env) if env is not None else None,
        # Own process group, so that the server can signal the command and its children.
        start_new_session=True,
    )


class NetnsExecBackend:
    """The lab's backend: `ip netns exec <ns> argv...` (ip execs, so the PID is the command's)."""

    def start(self, target: ExecTarget, argv: Sequence[str]) -> subprocess.Popen[bytes]:
        if not argv:
            raise ValueError("empty command")
        if target.netns is None:
            return _popen(argv)
        return _popen(["ip", "netns", "exec", target.netns, *argv])


class LocalExecBackend:
    """Runs argv on this machine as is (tests), optionally mapping program names to others.

    `programs` maps argv[0] to a replacement prefix, e.g. {"tcpdump": [python, fake.py]}.
    """

    def __init__(self, programs: Mapping[str, Sequence[str]] | None = None) -> None:
        self.programs = dict(programs or {})
        self.started: list[tuple[ExecTarget, tuple[str, ...]]] = []

    def start(self, target: ExecTarget, argv: Sequence[str]) -> subprocess.Popen[bytes]:
        if not argv:
            raise ValueError("empty command")
        self.started.append((target, tuple(argv)))
        prefix = self.programs.get(argv[0])
        real = [*prefix, *argv[1:]] if prefix is not None else list(argv)
        env = {
            **os.environ,
            "PATHTRACE_EXEC_POD": target.pod or "",
            "PATHTRACE_EXEC_NODE": target.node or "",
        }
        return _popen(real, env)


def python_program(path: str) -> list[str]:
    """An argv prefix running a Python file with this interpreter (for LocalExecBackend)."""
    return [sys.executable, path]

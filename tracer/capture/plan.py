"""The capture plan: what to capture where, computed from resolved targets. Pure.

From the targets (`targets`) this module computes every point of the capture: its tcpdump argv
(with the one filter of `filter`), the ephemeral-container specs and the node-pod specs (`pods`),
and the commands that collect node facts. It talks to nothing: tracer.kube resolves targets and
tracer.capture.lifecycle carries the plan out.
"""

from __future__ import annotations

import math
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from tracer.capture.filter import filter_plan
from tracer.capture.pods import (
    DEFAULT_IMAGE,
    DEFAULT_SNAPLEN,
    ephemeral_container_spec,
    labels,
    node_pod_manifest,
    tcpdump_argv,
)
from tracer.capture.targets import PodTarget, Targets

# Node facts: file under RUN/nodes/<node>/ -> argv run in the node pod (host network namespace).
NODE_FACT_COMMANDS: Mapping[str, tuple[str, ...]] = {
    "iptables-save.txt": ("iptables-save",),
    "iptables-legacy-save.txt": ("iptables-legacy-save",),
    "ip6tables-save.txt": ("ip6tables-save",),
    "nft.txt": ("nft", "list", "ruleset"),
    "ipvsadm.txt": ("ipvsadm", "-Ln"),
    "conntrack.txt": ("conntrack", "-L"),
    # conntrack's own counters (insert_failed, drop, early_drop): sampled before the capture too,
    # so that their growth during it can be told from what happened since boot.
    "conntrack-stats.txt": ("conntrack", "-S"),
    "conntrack-limits.txt": (
        "sysctl",
        "net.netfilter.nf_conntrack_count",
        "net.netfilter.nf_conntrack_max",
    ),
    # `ip -j address` is `ip -j link` plus each link's addresses: ifindex -> name, addresses.
    "links.json": ("ip", "-j", "address", "show"),
    "proxy-mode.txt": ("curl", "-s", "--max-time", "2", "http://localhost:10249/proxyMode"),
}

# A meshed pod's own facts, read through its debug container after the request: the sidecar's
# REDIRECT rules (its own nat table), the REDIRECTs' original destinations (its conntrack) and
# its links (an `any` capture inside the pod numbers interfaces in the pod's own space).
POD_FACT_COMMANDS: Mapping[str, tuple[str, ...]] = {
    "iptables-save.txt": ("iptables-save", "-t", "nat"),
    "conntrack.txt": ("conntrack", "-L"),
    "links.json": ("ip", "-j", "addr", "show"),
}

# A Cilium agent's Services and conntrack, read in its own container after the request.
LB_AGENT_CONTAINER = "cilium-agent"
LB_AGENT_FACT_COMMANDS: Mapping[str, tuple[str, ...]] = {
    "cilium-service-list.txt": ("cilium-dbg", "service", "list"),
    "cilium-bpf-lb-list.txt": ("cilium-dbg", "bpf", "lb", "list"),
    "cilium-bpf-ct-list.txt": ("cilium-dbg", "bpf", "ct", "list", "global"),
}

# Node facts sampled before the captures start.
NODE_FACT_COMMANDS_BEFORE: Mapping[str, tuple[str, ...]] = {
    "conntrack-stats-before.txt": ("conntrack", "-S"),
}

_RUN_ID = re.compile(r"^[a-z0-9]([-a-z0-9]{0,30}[a-z0-9])?$")


@dataclass(frozen=True)
class CaptureOptions:
    run_id: str
    image: str = DEFAULT_IMAGE
    snaplen: int = DEFAULT_SNAPLEN
    max_packets: int | None = None
    duration: float = 0.0  # seconds to wait for the user to reproduce; 0 = run --request
    timeout: float = 120.0  # setup + request budget, added to the dead-man deadline
    privileged: bool = False
    pod_capture: bool = True
    node_capture: bool = True
    # A point inside the cluster DNS pods means a permanent ephemeral container in kube-system:
    # only on request. Without it the lookup is captured at the client pod and the nodes.
    dns_pod_capture: bool = False
    node_namespace: str = "default"
    node_interface: str = "any"
    pod_interface: str = "eth0"
    margin: float = 60.0


@dataclass(frozen=True)
class PlannedPoint:
    """One capture point and how to run it. `container` is the container tcpdump runs in."""

    name: str
    role: str
    kind: Literal["ephemeral", "node"]
    node: str
    namespace: str
    pod: str
    container: str
    interface: str
    argv: tuple[str, ...]
    target_pod: str | None = None  # the workload pod an ephemeral container was added to
    mesh: str | None = None  # a meshed pod's mesh: its own facts are read (POD_FACT_COMMANDS)


@dataclass(frozen=True)
class EphemeralContainer:
    namespace: str
    pod: str
    spec: Mapping[str, Any]

    @property
    def name(self) -> str:
        return str(self.spec["name"])


@dataclass(frozen=True)
class NodePod:
    node: str
    namespace: str
    name: str
    manifest: Mapping[str, Any]


@dataclass(frozen=True)
class CapturePlan:
    run_id: str
    filter: str
    points: tuple[PlannedPoint, ...]
    ephemeral: tuple[EphemeralContainer, ...]
    node_pods: tuple[NodePod, ...]
    labels: Mapping[str, str]
    deadline_s: int
    request_point: str | None = None  # the point whose container runs --request
    node_facts: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: NODE_FACT_COMMANDS)
    node_facts_before: Mapping[str, tuple[str, ...]] = field(
        default_factory=lambda: NODE_FACT_COMMANDS_BEFORE
    )
    warnings: tuple[str, ...] = ()
    # Load-balancer agents read after the request (exec, read-only): their facts go to their
    # node's directory (LB_AGENT_FACT_COMMANDS).
    lb_agents: tuple[PlannedPoint, ...] = ()


def new_run_id(now: datetime | None = None) -> str:
    """A run id that is a valid label value and container-name fragment: 20240102-030405-a1b2."""
    now = now or datetime.now(UTC)
    return f"{now:%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"


def _nodes_on_path(targets: Targets) -> list[str]:
    names: list[str] = []
    for p in (targets.client, *targets.ingress_pods, *targets.servers):
        if p is not None and p.node and p.node not in names:
            names.append(p.node)
    if targets.uses_name:
        for p in targets.dns_pods:
            if p.node and p.node not in names:
                names.append(p.node)
    for n in targets.nodes:
        if n.name not in names:
            names.append(n.name)
    return names


def _point_names(
    targets: Targets, pod_roles: list[tuple[str, PodTarget]], options: CaptureOptions
) -> dict[tuple[str, str], str]:
    """Points are named as the lab names them: a pod's point by the pod's name, a node's by
    the node's name. A name that would repeat (the same pod name in two namespaces, a pod
    named like a node) is qualified: NAMESPACE-POD, node-NODE."""
    pods = list(dict.fromkeys((p.namespace, p.name) for _, p in pod_roles))
    nodes = _nodes_on_path(targets) if options.node_capture else []
    wanted: list[tuple[tuple[str, str], str]] = [(k, k[1]) for k in pods]
    wanted += [(("", n), n) for n in nodes]
    counts: dict[str, int] = {}
    for _, name in wanted:
        counts[name] = counts.get(name, 0) + 1
    out = {}
    for key, name in wanted:
        if counts[name] > 1:
            name = f"{key[0]}-{name}" if key[0] else f"node-{name}"
        out[key] = name
    return out


def make_plan(targets: Targets, options: CaptureOptions) -> CapturePlan:
    """Every point of the capture: ephemeral containers at pods, host-network pods at nodes."""
    if not _RUN_ID.match(options.run_id):
        raise ValueError(f"run id {options.run_id!r} is not a short lowercase DNS label")
    deadline = int(math.ceil(options.duration + options.timeout + options.margin))
    bpf, filter_warnings = filter_plan(targets)
    points: list[PlannedPoint] = []
    ephemeral: list[EphemeralContainer] = []
    node_pods: list[NodePod] = []
    warnings: list[str] = list(filter_warnings)
    request_point = None

    pod_roles: list[tuple[str, PodTarget]] = []
    if targets.client is not None:
        pod_roles.append(("client", targets.client))
    pod_roles += [("ingress", p) for p in targets.ingress_pods]
    if targets.uses_name and options.dns_pod_capture:
        pod_roles += [("dns", p) for p in targets.dns_pods]
    elif targets.uses_name and targets.dns_pods and options.pod_capture:
        warnings.append(
            "the DNS lookup is captured at the client pod and the nodes, not inside the "
            "cluster DNS pods (--capture-dns-pods adds a permanent container to each of them)"
        )
    pod_roles += [("server", p) for p in targets.servers]
    names = _point_names(targets, pod_roles, options)

    if options.pod_capture:
        seen: set[tuple[str, str]] = set()
        for role, pod in pod_roles:
            if (pod.namespace, pod.name) in seen:
                continue
            seen.add((pod.namespace, pod.name))
            if pod.host_network:
                warnings.append(
                    f"{role} pod {pod.namespace}/{pod.name} uses the host network: "
                    "its traffic is captured by the node point"
                )
                continue
            spec = ephemeral_container_spec(
                options.run_id,
                len(ephemeral),
                options.image,
                pod.containers[0] if pod.containers else None,
                deadline,
            )
            eph = EphemeralContainer(pod.namespace, pod.name, spec)
            ephemeral.append(eph)
            name = names[(pod.namespace, pod.name)]
            interface = options.pod_interface
            if pod.mesh is not None and interface != "any":
                # The app-to-sidecar legs are on the pod's loopback, which eth0 never sees.
                interface = "any"
                warnings.append(
                    f"{role} pod {pod.namespace}/{pod.name} runs a {pod.mesh} sidecar: captured "
                    "on `any` inside the pod (the app-to-sidecar legs are on its loopback), and "
                    "its own nat table and conntrack are read"
                )
            points.append(
                PlannedPoint(
                    name=name,
                    role=role,
                    kind="ephemeral",
                    node=pod.node,
                    namespace=pod.namespace,
                    pod=pod.name,
                    container=eph.name,
                    interface=interface,
                    argv=tcpdump_argv(
                        interface,
                        bpf,
                        snaplen=options.snaplen,
                        max_packets=options.max_packets,
                    ),
                    target_pod=pod.name,
                    mesh=pod.mesh,
                )
            )
            if role == "client":
                request_point = name
    elif targets.client is not None:
        warnings.append("pod capture is off: no capture inside the client and server pods")

    if options.node_capture:
        for i, node in enumerate(_nodes_on_path(targets)):
            manifest = node_pod_manifest(
                options.run_id,
                i,
                node,
                options.node_namespace,
                options.image,
                deadline,
                privileged=options.privileged,
            )
            pod_name = manifest["metadata"]["name"]
            node_pods.append(NodePod(node, options.node_namespace, pod_name, manifest))
            points.append(
                PlannedPoint(
                    name=names[("", node)],
                    role="node",
                    kind="node",
                    node=node,
                    namespace=options.node_namespace,
                    pod=pod_name,
                    container="capture",
                    interface=options.node_interface,
                    argv=tcpdump_argv(
                        options.node_interface,
                        bpf,
                        snaplen=options.snaplen,
                        max_packets=options.max_packets,
                    ),
                )
            )
    agents = tuple(
        PlannedPoint(
            name=f"lb-agent-{a.node}",
            role="node",
            kind="node",
            node=a.node,
            namespace=a.namespace,
            pod=a.name,
            container=LB_AGENT_CONTAINER,
            interface="",
            argv=(),
        )
        for a in targets.lb_agents
    )
    return CapturePlan(
        lb_agents=agents,
        run_id=options.run_id,
        filter=bpf,
        points=tuple(points),
        ephemeral=tuple(ephemeral),
        node_pods=tuple(node_pods),
        labels=labels(options.run_id),
        deadline_s=deadline,
        request_point=request_point,
        warnings=tuple(warnings),
    )


def plan_to_json(plan: CapturePlan) -> dict[str, Any]:
    """The plan as JSON (golden files, `--dry-run`)."""
    return {
        "run_id": plan.run_id,
        "filter": plan.filter,
        "deadline_s": plan.deadline_s,
        "labels": dict(plan.labels),
        "request_point": plan.request_point,
        "points": [
            {
                "name": p.name,
                "role": p.role,
                "kind": p.kind,
                "node": p.node,
                "namespace": p.namespace,
                "pod": p.pod,
                "container": p.container,
                "interface": p.interface,
                "argv": list(p.argv),
            }
            for p in plan.points
        ],
        "ephemeral_containers": [
            {"namespace": e.namespace, "pod": e.pod, "spec": dict(e.spec)} for e in plan.ephemeral
        ],
        "node_pods": [dict(n.manifest) for n in plan.node_pods],
        "node_facts": {k: list(v) for k, v in plan.node_facts.items()},
        "node_facts_before": {k: list(v) for k, v in plan.node_facts_before.items()},
        "warnings": list(plan.warnings),
        "changes": plan_changes(plan),
    }


def plan_changes(plan: CapturePlan) -> dict[str, list[str]]:
    """What the capture changes in the cluster: the pods that get a permanent ephemeral
    container, and the pods created for the run (and deleted after it); and the load-balancer
    agents it only reads (exec), when there are any."""
    out = {
        "permanent_ephemeral_containers": [
            f"{e.namespace}/{e.pod}:{e.name}" for e in plan.ephemeral
        ],
        "temporary_pods": [f"{n.namespace}/{n.name} (node {n.node})" for n in plan.node_pods],
    }
    if plan.lb_agents:
        out["read_only_exec"] = [
            f"{a.namespace}/{a.pod}:{a.container} (node {a.node})" for a in plan.lb_agents
        ]
    return out


def describe_changes(plan: CapturePlan) -> list[str]:
    """`plan_changes` as lines for people, before anything is created."""
    lines = []
    if plan.ephemeral:
        lines.append(
            "adds an ephemeral container to "
            + ", ".join(f"{e.namespace}/{e.pod}" for e in plan.ephemeral)
            + " (permanent: Kubernetes never removes an ephemeral container from its pod)"
        )
    if plan.node_pods:
        lines.append(
            "creates, and deletes after the capture, "
            + ", ".join(f"{n.namespace}/{n.name} on {n.node}" for n in plan.node_pods)
        )
    if not lines:
        lines.append("changes nothing in the cluster")
    if plan.lb_agents:
        lines.append(
            "reads (changes nothing) the eBPF load-balancer of "
            + ", ".join(f"{a.namespace}/{a.pod} on {a.node}" for a in plan.lb_agents)
            + ": `cilium-dbg service list`, `bpf lb list`, `bpf ct list global`"
        )
    return lines


def request_argv(request: str) -> list[str]:
    """`--request 'curl -s http://web/'` as argv (shlex rules; never run through a shell)."""
    import shlex

    try:
        argv = shlex.split(request)
    except ValueError as e:
        raise ValueError(f"--request {request!r}: {e}") from e
    if not argv:
        raise ValueError("--request is empty")
    return argv

"""The capture plan: what to capture where, computed from resolved targets. Pure.

From the targets (client pod or external, Services with their endpoints and nodes, DNS, Ingress
controllers) this module computes the BPF filter, the tcpdump argv of every point, the
ephemeral-container specs, the node-pod specs and the commands that collect node facts. It talks
to nothing: tracer.kube resolves targets and tracer.capture.lifecycle carries the plan out.
"""

from __future__ import annotations

import ipaddress
import math
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from tracer.rundir import Service

MANAGED_BY = "app.kubernetes.io/managed-by"
RUN_LABEL = "pathtrace.io/run"
NODE_ANNOTATION = "pathtrace.io/node"
# Public image with tcpdump, iptables, nft, conntrack, iproute2 and curl.
DEFAULT_IMAGE = "nicolaka/netshoot:v0.13"
DEFAULT_SNAPLEN = 256
# VXLAN ports: 8472 is the Linux (flannel, Cilium) default, 4789 the IANA one (Calico VXLAN).
VXLAN_PORTS = (4789, 8472)
DNS_PORT = 53
# Only what tcpdump needs: NET_RAW to open the packet socket, NET_ADMIN for promiscuous mode.
CAPABILITIES = ("NET_ADMIN", "NET_RAW")

# Node facts: file under RUN/nodes/<node>/ -> argv run in the node pod (host network namespace).
NODE_FACT_COMMANDS: Mapping[str, tuple[str, ...]] = {
    "iptables-save.txt": ("iptables-save",),
    "iptables-legacy-save.txt": ("iptables-legacy-save",),
    "nft.txt": ("nft", "list", "ruleset"),
    "ipvsadm.txt": ("ipvsadm", "-Ln"),
    "conntrack.txt": ("conntrack", "-L"),
    # `ip -j address` is `ip -j link` plus each link's addresses: ifindex -> name, addresses.
    "links.json": ("ip", "-j", "address", "show"),
    "proxy-mode.txt": ("curl", "-s", "--max-time", "2", "http://localhost:10249/proxyMode"),
}

_RUN_ID = re.compile(r"^[a-z0-9]([-a-z0-9]{0,30}[a-z0-9])?$")


@dataclass(frozen=True)
class PodTarget:
    namespace: str
    name: str
    ip: str
    node: str
    containers: tuple[str, ...] = ()
    host_network: bool = False


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
    warnings: tuple[str, ...] = ()


def new_run_id(now: datetime | None = None) -> str:
    """A run id that is a valid label value and container-name fragment: 20240102-030405-a1b2."""
    now = now or datetime.now(UTC)
    return f"{now:%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"


def labels(run_id: str) -> dict[str, str]:
    return {MANAGED_BY: "pathtrace", RUN_LABEL: run_id}


def _ip_key(ip: str) -> tuple[int, int]:
    a = ipaddress.ip_address(ip)
    return (a.version, int(a))


def bpf_filter(targets: Targets) -> str:
    """One filter for every point: traffic of the request's addresses and ports, its nodePorts,
    and the overlay (VXLAN) so that encapsulated copies on a node's uplink are kept too."""
    hosts: set[str] = set(targets.extra_ips)
    ports: set[int] = set(targets.extra_ports)
    for s in targets.services:
        hosts.update(s.cluster_ips)
        for p in s.ports:
            ports.add(p.port)
            if p.target_port is not None:
                ports.add(p.target_port)
        hosts.update(e.address for e in s.endpoints)
    for pod in (targets.client, *targets.servers, *targets.ingress_pods):
        if pod is not None and not pod.host_network:
            hosts.add(pod.ip)
    if targets.uses_name and targets.dns is not None:
        hosts.update(targets.dns.cluster_ips)
        hosts.update(p.ip for p in targets.dns_pods)
        ports.add(DNS_PORT)
    node_ports = sorted(
        {p.node_port for s in targets.services for p in s.ports if p.node_port is not None}
    )
    terms = []
    if hosts:
        host_expr = " or ".join(f"host {h}" for h in sorted(hosts, key=_ip_key))
        if ports:
            # ICMP stays in: "port unreachable" and "fragmentation needed" explain failures.
            port_expr = " or ".join([*(f"port {p}" for p in sorted(ports)), "icmp", "icmp6"])
            terms.append(f"(({host_expr}) and ({port_expr}))")
        else:
            terms.append(f"({host_expr})")
    if node_ports:
        terms.append("(" + " or ".join(f"tcp port {p} or udp port {p}" for p in node_ports) + ")")
    terms.append("(" + " or ".join(f"udp port {p}" for p in VXLAN_PORTS) + ")")
    return " or ".join(terms)


def tcpdump_argv(
    interface: str, bpf: str, *, snaplen: int = DEFAULT_SNAPLEN, max_packets: int | None = None
) -> tuple[str, ...]:
    """tcpdump writing pcap to stdout, packet by packet (see DESIGN: --immediate-mode -U).

    Nanosecond stamps: at microseconds a pod's sighting and its node's veth sighting of the same
    packet often share a stamp, and the order between them would rest on a tie-break.
    """
    argv = [
        "tcpdump", "-i", interface, "--immediate-mode", "-U", "--time-stamp-precision=nano",
        "-s", str(snaplen), "-w", "-",
    ]  # fmt: skip
    if max_packets is not None:
        argv += ["-c", str(max_packets)]
    # The filter is one argv element built from resolved addresses; never passed to a shell.
    argv.append(bpf)
    return tuple(argv)


def stop_argv() -> tuple[str, ...]:
    """Ends tcpdump gracefully (SIGINT flushes its buffer and prints its packet counts)."""
    return ("pkill", "-INT", "-x", "tcpdump")


def container_name(run_id: str, n: int) -> str:
    return f"pathtrace-{run_id}-{n}"


def ephemeral_container_spec(
    run_id: str, n: int, image: str, target_container: str | None, deadline_s: int
) -> dict[str, Any]:
    """The debug container added to a workload pod. Labels cannot go on containers: the manifest
    records each one, because ephemeral containers can never be removed."""
    spec: dict[str, Any] = {
        "name": container_name(run_id, n),
        "image": image,
        # A holder process: tcpdump runs through exec. When it ends, the runtime tears down the
        # container and everything exec'd in it, so the sleep is the dead-man switch.
        "command": ["sleep", str(deadline_s)],
        "stdin": False,
        "tty": False,
        "terminationMessagePolicy": "File",
        "securityContext": {"capabilities": {"add": list(CAPABILITIES)}},
    }
    if target_container:
        spec["targetContainerName"] = target_container
    return spec


def node_pod_manifest(
    run_id: str,
    n: int,
    node: str,
    namespace: str,
    image: str,
    deadline_s: int,
    *,
    privileged: bool = False,
) -> dict[str, Any]:
    """A host-network pod pinned to `node`; activeDeadlineSeconds kills it if we cannot."""
    security: dict[str, Any] = (
        {"privileged": True} if privileged else {"capabilities": {"add": list(CAPABILITIES)}}
    )
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": f"pathtrace-{run_id}-node-{n}",
            "namespace": namespace,
            "labels": labels(run_id),
            "annotations": {NODE_ANNOTATION: node},
        },
        "spec": {
            "nodeName": node,
            "hostNetwork": True,
            "restartPolicy": "Never",
            "activeDeadlineSeconds": deadline_s,
            "terminationGracePeriodSeconds": 1,
            "automountServiceAccountToken": False,
            "enableServiceLinks": False,
            "tolerations": [{"operator": "Exists"}],
            "containers": [
                {
                    "name": "capture",
                    "image": image,
                    "command": ["sleep", str(deadline_s)],
                    "securityContext": security,
                }
            ],
        },
    }


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


def make_plan(targets: Targets, options: CaptureOptions) -> CapturePlan:
    """Every point of the capture: ephemeral containers at pods, host-network pods at nodes."""
    if not _RUN_ID.match(options.run_id):
        raise ValueError(f"run id {options.run_id!r} is not a short lowercase DNS label")
    deadline = int(math.ceil(options.duration + options.timeout + options.margin))
    bpf = bpf_filter(targets)
    points: list[PlannedPoint] = []
    ephemeral: list[EphemeralContainer] = []
    node_pods: list[NodePod] = []
    warnings: list[str] = []
    request_point = None

    pod_roles: list[tuple[str, PodTarget]] = []
    if targets.client is not None:
        pod_roles.append(("client", targets.client))
    pod_roles += [("ingress", p) for p in targets.ingress_pods]
    if targets.uses_name:
        pod_roles += [("dns", p) for p in targets.dns_pods]
    pod_roles += [("server", p) for p in targets.servers]

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
            name = "client" if role == "client" else f"{role}-{pod.name}"
            points.append(
                PlannedPoint(
                    name=name,
                    role=role,
                    kind="ephemeral",
                    node=pod.node,
                    namespace=pod.namespace,
                    pod=pod.name,
                    container=eph.name,
                    interface=options.pod_interface,
                    argv=tcpdump_argv(
                        options.pod_interface,
                        bpf,
                        snaplen=options.snaplen,
                        max_packets=options.max_packets,
                    ),
                    target_pod=pod.name,
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
                    name=f"node-{node}",
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
    return CapturePlan(
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
        "warnings": list(plan.warnings),
    }


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

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

from tracer.pcap.decode import (
    GENEVE_PORT,
    IPPROTO_ESP,
    IPPROTO_GRE,
    IPPROTO_IPIP,
    IPPROTO_IPV6,
    IPSEC_NAT_T_PORT,
    WIREGUARD_PORTS,
)
from tracer.pcap.decode import VXLAN_PORTS as _VXLAN_PORTS
from tracer.rundir import Service

MANAGED_BY = "app.kubernetes.io/managed-by"
RUN_LABEL = "pathtrace.io/run"
NODE_ANNOTATION = "pathtrace.io/node"
# Public image with tcpdump, iptables, nft, conntrack, iproute2 and curl.
DEFAULT_IMAGE = "nicolaka/netshoot:v0.13"
DEFAULT_SNAPLEN = 256
DNS_PORT = 53
# Only what tcpdump needs: NET_RAW to open the packet socket, NET_ADMIN for promiscuous mode.
CAPABILITIES = ("NET_ADMIN", "NET_RAW")

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

# Node facts sampled before the captures start.
# A meshed pod's own facts, read through its debug container after the request: the sidecar's
# REDIRECT rules (its own nat table), the REDIRECTs' original destinations (its conntrack) and
# its links (an `any` capture inside the pod numbers interfaces in the pod's own space).
POD_FACT_COMMANDS: Mapping[str, tuple[str, ...]] = {
    "iptables-save.txt": ("iptables-save", "-t", "nat"),
    "conntrack.txt": ("conntrack", "-L"),
    "links.json": ("ip", "-j", "addr", "show"),
}
# Containers that mark a meshed pod: the sidecar itself or the init container that wrote its
# capture rules.
MESH_CONTAINERS: Mapping[str, tuple[str, ...]] = {
    "istio": ("istio-proxy", "istio-init", "istio-validation"),
    "linkerd": ("linkerd-proxy", "linkerd-init"),
}

# A Cilium agent's Services and conntrack, read in its own container after the request.
LB_AGENT_CONTAINER = "cilium-agent"
LB_AGENT_FACT_COMMANDS: Mapping[str, tuple[str, ...]] = {
    "cilium-service-list.txt": ("cilium-dbg", "service", "list"),
    "cilium-bpf-lb-list.txt": ("cilium-dbg", "bpf", "lb", "list"),
    "cilium-bpf-ct-list.txt": ("cilium-dbg", "bpf", "ct", "list", "global"),
}

NODE_FACT_COMMANDS_BEFORE: Mapping[str, tuple[str, ...]] = {
    "conntrack-stats-before.txt": ("conntrack", "-S"),
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


def labels(run_id: str) -> dict[str, str]:
    return {MANAGED_BY: "pathtrace", RUN_LABEL: run_id}


def _ip_key(ip: str) -> tuple[int, int]:
    a = ipaddress.ip_address(ip)
    return (a.version, int(a))


def bpf_filter(targets: Targets) -> str:
    """One filter for every point: traffic of the request's addresses and ports, its nodePorts,
    and every overlay's encapsulated copies on a node's uplink (`overlay_filter`)."""
    return filter_plan(targets)[0]


def _request_hosts(targets: Targets) -> tuple[set[str], set[int]]:
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
    return hosts, ports


def filter_plan(targets: Targets) -> tuple[str, tuple[str, ...]]:
    """The filter and what the user should know about it (warnings)."""
    hosts, ports = _request_hosts(targets)
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
    overlay, warnings = overlay_filter(sorted(hosts, key=_ip_key))
    terms.append(overlay)
    return " or ".join(terms), warnings


# ---------------------------------------------------------------------------------------------
# Overlays. Each encapsulation's outer header is matched by protocol or port, and its inner packet
# on the request's addresses by fixed byte offsets where the headers have their usual layout (an
# IPv4 outer header of 20 bytes, an IPv6 one without extension headers, Geneve without options,
# GRE without checksum or sequence number). Offsets that depend on packet bytes cost the kernel's
# filter many instructions per comparison; a packet with any other layout is kept whole.
# Encrypted tunnels (WireGuard, ESP) hide the inner packet: they are kept whole, and the analysis
# matches their hops by timing and size.

# VXLAN: 8472 is the Linux (flannel, Cilium) default, 4789 the IANA one (Calico VXLAN); Geneve:
# OVN-Kubernetes, Antrea, Cilium in Geneve mode; IP-in-IP: Calico, flannel's ipip backend.
VXLAN_PORTS = tuple(sorted(_VXLAN_PORTS))
ETH_P_IP, ETH_P_IPV6, ETH_P_TEB = 0x0800, 0x86DD, 0x6558
# Past this many 32-bit address comparisons per encapsulation the program could exceed what the
# kernel accepts (4096 instructions): the overlays are then kept whole.
MAX_INNER_WORDS = 88


def _words(ip: str) -> list[str]:
    """The address as 32-bit hex words, the way a BPF load of 4 bytes sees it."""
    packed = ipaddress.ip_address(ip).packed
    return [f"0x{packed[i : i + 4].hex()}" for i in range(0, len(packed), 4)]


def _inner_ip(acc: str, at: int, hosts: list[str], versions: tuple[int, ...] = (4, 6)) -> str:
    """An IP packet at byte `at` of `acc` (ip or ip6) from or to one of `hosts` (of the IP
    `versions` the encapsulation carries); "" when it can carry none of them."""
    v4 = [h for h in hosts if ipaddress.ip_address(h).version == 4] if 4 in versions else []
    v6 = [h for h in hosts if ipaddress.ip_address(h).version == 6] if 6 in versions else []
    alts = []
    if v4:
        eq = [f"{acc}[{at + off}:4] = {_words(h)[0]}" for h in v4 for off in (12, 16)]
        alts.append(f"({acc}[{at}] & 0xf0 = 0x40 and ({' or '.join(eq)}))")
    if v6:
        eq = [
            "("
            + " and ".join(f"{acc}[{at + base + 4 * i}:4] = {w}" for i, w in enumerate(_words(h)))
            + ")"
            for h in v6
            for base in (8, 24)
        ]
        alts.append(f"({acc}[{at}] & 0xf0 = 0x60 and ({' or '.join(eq)}))")
    return "(" + " or ".join(alts) + ")" if alts else ""


def _inner_frame(acc: str, at: int, hosts: list[str]) -> str:
    """An Ethernet frame at byte `at` whose IP packet is from or to one of `hosts`."""
    et = f"{acc}[{at + 12}:2]"
    return f"(({et} = {ETH_P_IP:#06x} or {et} = {ETH_P_IPV6:#06x}) and {_inner_ip(acc, at + 14, hosts)})"


def _tunnels(acc: str, hl: int, hosts: list[str]) -> list[str]:
    """Every encapsulation under an outer header of `hl` bytes read through `acc`: each term is
    "this tunnel, and either not its usual layout or an inner packet of the request"."""
    proto = "ip proto" if acc == "ip" else "ip6 proto"
    udp = "ip6[6] = 17" if acc == "ip6" else "ip proto 17"
    vxlan_ports = " or ".join(f"udp port {p}" for p in VXLAN_PORTS)
    u = hl + 8  # the UDP payload
    # Geneve: its first byte's low 6 bits are the options' length; its protocol type says
    # whether an Ethernet frame or an IP packet follows.
    gen_proto = f"{acc}[{u + 2}:2]"
    geneve = (
        f"({acc}[{u}] & 0x3f != 0 or ({gen_proto} = {ETH_P_TEB:#06x} and "
        f"{_inner_frame(acc, u + 8, hosts)}) or (({gen_proto} = {ETH_P_IP:#06x} or "
        f"{gen_proto} = {ETH_P_IPV6:#06x}) and {_inner_ip(acc, u + 8, hosts)}))"
    )
    # GRE (RFC 2784/2890): 4 bytes, 8 with a key (NVGRE, ERSPAN); the checksum and sequence
    # number bits (0x80, 0x10) make any other layout.
    gre = []
    for flags, length in ((0x00, 4), (0x20, 8)):
        gp = f"{acc}[{hl + 2}:2]"
        gre.append(
            f"({acc}[{hl}] & 0xb0 = {flags:#04x} and ((({gp} = {ETH_P_IP:#06x} or "
            f"{gp} = {ETH_P_IPV6:#06x}) and {_inner_ip(acc, hl + length, hosts)}) or "
            f"({gp} = {ETH_P_TEB:#06x} and {_inner_frame(acc, hl + length, hosts)})))"
        )
    gre_other = f"({acc}[{hl}] & 0xb0 != 0x00 and {acc}[{hl}] & 0xb0 != 0x20)"
    terms = [
        f"({udp} and ({vxlan_ports}) and {_inner_frame(acc, u + 8, hosts)})",
        f"({udp} and udp port {GENEVE_PORT} and {geneve})",
        f"({proto} {IPPROTO_GRE} and ({gre_other} or {' or '.join(gre)}))",
    ]
    for ipproto, version in ((IPPROTO_IPIP, 4), (IPPROTO_IPV6, 6)):
        inner = _inner_ip(acc, hl, hosts, (version,))
        if inner:
            terms.append(f"({proto} {ipproto} and {inner})")
    return terms


def _whole_tunnels() -> str:
    ports = " or ".join(f"udp port {p}" for p in (*VXLAN_PORTS, GENEVE_PORT))
    protos = " or ".join(
        f"{f} proto {p}" for f in ("ip", "ip6") for p in (IPPROTO_IPIP, IPPROTO_IPV6, IPPROTO_GRE)
    )
    return f"({ports} or {protos})"


def _encrypted() -> str:
    wg = " or ".join(f"udp port {p}" for p in WIREGUARD_PORTS)
    return f"({wg} or udp port {IPSEC_NAT_T_PORT} or ip proto {IPPROTO_ESP} or ip6 proto {IPPROTO_ESP})"


def overlay_filter(hosts: list[str]) -> tuple[str, tuple[str, ...]]:
    """Every overlay's encapsulated copies of the request's packets: VXLAN (4789, 8472),
    Geneve (6081), IP-in-IP (4), 6in4 (41), GRE (47), under an IPv4 or IPv6 outer header,
    filtered on the inner addresses; WireGuard and ESP kept whole (their inner packet is
    encrypted). Returns the filter and warnings."""
    words = sum(2 if ipaddress.ip_address(h).version == 4 else 8 for h in hosts)
    if not hosts:
        return f"{_whole_tunnels()} or {_encrypted()}", ()
    if words > MAX_INNER_WORDS:
        return f"{_whole_tunnels()} or {_encrypted()}", (
            f"{len(hosts)} addresses are too many to filter encapsulated packets on their inner "
            "addresses: every overlay packet is captured",
        )
    # Only the usual IPv4 header (20 bytes, no options) is read at fixed offsets.
    v4 = " or ".join(_tunnels("ip", 20, hosts))
    v6 = " or ".join(_tunnels("ip6", 40, hosts))
    v4_other = f"(ip[0] != 0x45 and {_whole_tunnels()})"
    return (
        f"(ip and ip[0] = 0x45 and ({v4})) or (ip6 and ({v6})) or {v4_other} or {_encrypted()}",
        (),
    )


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

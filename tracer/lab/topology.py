"""The lab's network: nodes, pods, the underlay and the flannel-style VXLAN overlay.

`plan_topology` is pure (names and addresses); `build_commands` turns a plan into the argv lists
that build it; `find_lab` and `teardown` find and remove everything by the `pt-` prefix, so they
work without (or with a corrupt) state file, after a crash or a kill -9.

Must not touch anything outside its own `pt-` namespaces: every link is created inside a lab
namespace (no link ever exists in the host namespace), and no rule is added to the host's tables.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tracer.errors import LabError
from tracer.lab.runner import Runner
from tracer.rundir import write_json_private

PREFIX = "pt-"
UNDERLAY_NS = "pt-underlay"
EXTERNAL_NS = "pt-external"
UNDERLAY_BRIDGE = "pt-br0"
UNDERLAY_NET = "192.168.50"
ROUTER_IP = f"{UNDERLAY_NET}.1"
EXTERNAL_IP = f"{UNDERLAY_NET}.100"
CLUSTER_CIDR = "10.244.0.0/16"
SERVICE_CIDR = "10.96.0.0/12"
# The dual-stack lab's IPv6 side (`plan_topology(dual_stack=True)`): ULA prefixes shaped like the
# IPv4 ones, as kubeadm's dual-stack examples use them.
UNDERLAY_NET6 = "fd00:50::"
ROUTER_IP6 = f"{UNDERLAY_NET6}1"
EXTERNAL_IP6 = f"{UNDERLAY_NET6}100"
CLUSTER_CIDR6 = "fd00:10:244::/56"
SERVICE_CIDR6 = "fd00:10:96::/112"
VXLAN_ID = 1
VXLAN_PORT = 8472  # the Linux kernel's default, flannel's on Linux
OVERLAY_MTU = 1450  # 1500 - 50 bytes of VXLAN encapsulation
STATE_DIR = Path(os.environ.get("PATHTRACE_LAB_STATE", "/run/pathtrace-lab"))
RESOLV_DIR = Path("/etc/netns")
# Kubernetes' pod resolv.conf (ClusterFirst DNS policy, cluster domain cluster.local).
POD_RESOLV_CONF = (
    "nameserver 10.96.0.10\n"
    "search default.svc.cluster.local svc.cluster.local cluster.local\n"
    "options ndots:5\n"
)


@dataclass(frozen=True)
class NodePlan:
    name: str
    index: int
    netns: str
    underlay_ip: str
    pod_cidr: str
    gateway: str  # cni0's address, the pods' default gateway
    vtep_ip: str  # flannel.1's address: the .0 of the pod CIDR
    vtep_mac: str
    # Dual-stack only ("" otherwise): the IPv6 counterparts. IPv6 pods use the same flannel.1
    # VXLAN (over the IPv4 underlay) and the same VTEP MAC.
    underlay_ip6: str = ""
    pod_cidr6: str = ""
    gateway6: str = ""
    vtep_ip6: str = ""


@dataclass(frozen=True)
class PodPlan:
    name: str
    node: str
    netns: str
    ip: str
    host_veth: str  # the node-side end, on cni0
    namespace: str = "default"  # the Kubernetes namespace
    ip6: str = ""  # dual-stack only


@dataclass(frozen=True)
class Topology:
    nodes: tuple[NodePlan, ...]
    pods: tuple[PodPlan, ...]
    router_ip: str = ROUTER_IP
    external_ip: str = EXTERNAL_IP
    dual_stack: bool = False
    router_ip6: str = ""
    external_ip6: str = ""

    def node(self, name: str) -> NodePlan:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(name)

    def pod(self, name: str) -> PodPlan:
        for p in self.pods:
            if p.name == name:
                return p
        raise KeyError(name)

    def namespaces(self) -> list[str]:
        return [
            UNDERLAY_NS,
            EXTERNAL_NS,
            *(n.netns for n in self.nodes),
            *(p.netns for p in self.pods),
        ]


# The fixed workload placement: (pod, node index, host part of the pod IP, k8s namespace).
POD_LAYOUT: tuple[tuple[str, int, int, str], ...] = (
    ("client", 1, 2, "default"),
    ("web-a", 1, 3, "default"),
    ("coredns", 1, 4, "kube-system"),
    ("ingress", 1, 5, "ingress-nginx"),
    ("web-b", 2, 3, "default"),
    ("slow", 2, 4, "default"),
)


def node_name(i: int) -> str:
    return f"node{i}"


def plan_topology(n_nodes: int = 2, *, dual_stack: bool = False) -> Topology:
    """Names and addresses for `n_nodes` nodes (node i: 192.168.50.(10+i), 10.244.i.0/24; with
    `dual_stack` also fd00:50::(10+i), fd00:10:244:i::/64 and pods fd00:10:244:i::HOST)."""
    if not 2 <= n_nodes <= 9:
        raise ValueError("the lab needs between 2 and 9 nodes")
    v6 = dual_stack
    nodes = tuple(
        NodePlan(
            name=node_name(i),
            index=i,
            netns=f"{PREFIX}{node_name(i)}",
            underlay_ip=f"{UNDERLAY_NET}.{10 + i}",
            pod_cidr=f"10.244.{i}.0/24",
            gateway=f"10.244.{i}.1",
            vtep_ip=f"10.244.{i}.0",
            vtep_mac=f"0e:70:74:00:00:{i:02x}",
            underlay_ip6=f"{UNDERLAY_NET6}{10 + i}" if v6 else "",
            pod_cidr6=f"fd00:10:244:{i}::/64" if v6 else "",
            gateway6=f"fd00:10:244:{i}::1" if v6 else "",
            vtep_ip6=f"fd00:10:244:{i}::" if v6 else "",
        )
        for i in range(1, n_nodes + 1)
    )
    pods = tuple(
        PodPlan(
            name=name,
            node=node_name(i),
            netns=f"{PREFIX}{node_name(i)}-{name}",
            ip=f"10.244.{i}.{host}",
            host_veth=f"{PREFIX}{name}",
            namespace=ns,
            ip6=f"fd00:10:244:{i}::{host}" if v6 else "",
        )
        for name, i, host, ns in POD_LAYOUT
    )
    if not v6:
        return Topology(nodes=nodes, pods=pods)
    return Topology(
        nodes=nodes,
        pods=pods,
        dual_stack=True,
        router_ip6=ROUTER_IP6,
        external_ip6=EXTERNAL_IP6,
    )


def _ns(ns: str, *argv: str) -> list[str]:
    return ["ip", "netns", "exec", ns, *argv]


def _sysctl(ns: str, *settings: str) -> list[str]:
    return _ns(ns, "sysctl", "-qw", *settings)


def build_commands(topo: Topology) -> list[list[str]]:
    """Every command that builds the network, in order (no workloads, no kube-proxy rules)."""
    cmds: list[list[str]] = []
    for ns in topo.namespaces():
        cmds.append(["ip", "netns", "add", ns])
    for ns in topo.namespaces():
        cmds.append(["ip", "-n", ns, "link", "set", "lo", "up"])
        if topo.dual_stack:
            # IPv6 on, as on a dual-stack node, with its chatter (router solicitations, MLD);
            # no duplicate address detection, so addresses work as soon as they are added.
            cmds.append(
                _sysctl(
                    ns,
                    "net.ipv6.conf.all.disable_ipv6=0",
                    "net.ipv6.conf.default.disable_ipv6=0",
                    "net.ipv6.conf.all.accept_dad=0",
                    "net.ipv6.conf.default.accept_dad=0",
                )
            )
        else:
            # IPv6 off: the lab is IPv4, and router solicitations would only add noise.
            cmds.append(
                _sysctl(
                    ns, "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1"
                )
            )
    u = UNDERLAY_NS
    cmds += [
        ["ip", "-n", u, "link", "add", UNDERLAY_BRIDGE, "type", "bridge"],
        ["ip", "-n", u, "addr", "add", f"{topo.router_ip}/24", "dev", UNDERLAY_BRIDGE],
        ["ip", "-n", u, "link", "set", UNDERLAY_BRIDGE, "up"],
        _sysctl(u, "net.ipv4.ip_forward=1"),
    ]
    if topo.dual_stack:
        cmds += [
            [
                "ip",
                "-n",
                u,
                "addr",
                "add",
                f"{topo.router_ip6}/64",
                "dev",
                UNDERLAY_BRIDGE,
                "nodad",
            ],
            _sysctl(u, "net.ipv6.conf.all.forwarding=1"),
        ]
    underlay_hosts = [(n.netns, f"{PREFIX}{n.name}", n.underlay_ip) for n in topo.nodes]
    underlay_hosts.append((EXTERNAL_NS, EXTERNAL_NS, topo.external_ip))
    for ns, port, ip in underlay_hosts:
        cmds += [
            [
                "ip",
                "-n",
                u,
                "link",
                "add",
                port,
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "netns",
                ns,
            ],
            ["ip", "-n", u, "link", "set", port, "master", UNDERLAY_BRIDGE, "up"],
            ["ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", "eth0"],
            ["ip", "-n", ns, "link", "set", "eth0", "up"],
            # A default route, as real nodes have: without it a node cannot reach a ClusterIP
            # from its own network namespace (the route lookup happens before the DNAT).
            ["ip", "-n", ns, "route", "add", "default", "via", topo.router_ip],
        ]
        ip6 = _underlay_ip6(topo, ns)
        if ip6:
            cmds += [
                ["ip", "-n", ns, "addr", "add", f"{ip6}/64", "dev", "eth0", "nodad"],
                ["ip", "-n", ns, "-6", "route", "add", "default", "via", topo.router_ip6],
            ]
    for n in topo.nodes:
        ns = n.netns
        cmds += [
            _sysctl(
                ns,
                "net.ipv4.ip_forward=1",
                "net.ipv4.conf.all.rp_filter=0",
                "net.ipv4.conf.default.rp_filter=0",
                "net.ipv4.conf.all.route_localnet=1",
            ),
            ["ip", "-n", ns, "link", "add", "cni0", "type", "bridge"],
            ["ip", "-n", ns, "link", "set", "cni0", "mtu", str(OVERLAY_MTU)],
            ["ip", "-n", ns, "addr", "add", f"{n.gateway}/24", "dev", "cni0"],
            ["ip", "-n", ns, "link", "set", "cni0", "up"],
            # br_netfilter is per network namespace on recent kernels: bridged pod traffic must
            # go through iptables, or pod -> ClusterIP -> pod on the same bridge breaks.
            _sysctl(ns, "net.bridge.bridge-nf-call-iptables=1"),
            [
                "ip", "-n", ns, "link", "add", "flannel.1", "type", "vxlan",
                "id", str(VXLAN_ID), "local", n.underlay_ip, "dev", "eth0",
                "dstport", str(VXLAN_PORT), "nolearning",
            ],
            ["ip", "-n", ns, "link", "set", "flannel.1", "address", n.vtep_mac, "mtu", str(OVERLAY_MTU)],
            ["ip", "-n", ns, "addr", "add", f"{n.vtep_ip}/32", "dev", "flannel.1"],
            ["ip", "-n", ns, "link", "set", "flannel.1", "up"],
        ]  # fmt: skip
        if topo.dual_stack:
            cmds += [
                _sysctl(
                    ns, "net.ipv6.conf.all.forwarding=1", "net.bridge.bridge-nf-call-ip6tables=1"
                ),
                ["ip", "-n", ns, "addr", "add", f"{n.gateway6}/64", "dev", "cni0", "nodad"],
                ["ip", "-n", ns, "addr", "add", f"{n.vtep_ip6}/128", "dev", "flannel.1", "nodad"],
            ]
        for peer in topo.nodes:
            if peer.name == n.name:
                continue
            cmds += [
                ["ip", "-n", ns, "route", "add", peer.pod_cidr, "via", peer.vtep_ip, "dev", "flannel.1", "onlink"],
                ["ip", "-n", ns, "neigh", "add", peer.vtep_ip, "lladdr", peer.vtep_mac, "dev", "flannel.1", "nud", "permanent"],
                _ns(ns, "bridge", "fdb", "append", peer.vtep_mac, "dev", "flannel.1", "dst", peer.underlay_ip),
            ]  # fmt: skip
            if topo.dual_stack:
                # IPv6 pods over the same VXLAN device, as flannel routes a dual-stack subnet.
                cmds += [
                    ["ip", "-n", ns, "-6", "route", "add", peer.pod_cidr6, "via", peer.vtep_ip6, "dev", "flannel.1", "onlink"],
                    ["ip", "-n", ns, "-6", "neigh", "add", peer.vtep_ip6, "lladdr", peer.vtep_mac, "dev", "flannel.1", "nud", "permanent"],
                ]  # fmt: skip
    for p in topo.pods:
        n = topo.node(p.node)
        cmds += [
            ["ip", "-n", n.netns, "link", "add", p.host_veth, "type", "veth", "peer", "name", "eth0", "netns", p.netns],
            ["ip", "-n", n.netns, "link", "set", p.host_veth, "mtu", str(OVERLAY_MTU), "master", "cni0", "up"],
            ["ip", "-n", n.netns, "link", "set", p.host_veth, "type", "bridge_slave", "hairpin", "on"],
            ["ip", "-n", p.netns, "link", "set", "eth0", "mtu", str(OVERLAY_MTU)],
            ["ip", "-n", p.netns, "addr", "add", f"{p.ip}/24", "dev", "eth0"],
            ["ip", "-n", p.netns, "link", "set", "eth0", "up"],
            ["ip", "-n", p.netns, "route", "add", "default", "via", n.gateway],
        ]  # fmt: skip
        if topo.dual_stack:
            cmds += [
                ["ip", "-n", p.netns, "addr", "add", f"{p.ip6}/64", "dev", "eth0", "nodad"],
                ["ip", "-n", p.netns, "-6", "route", "add", "default", "via", n.gateway6],
            ]
    return cmds


def _underlay_ip6(topo: Topology, ns: str) -> str:
    """The IPv6 underlay address of a node or the external client ("" when not dual-stack)."""
    if not topo.dual_stack:
        return ""
    if ns == EXTERNAL_NS:
        return topo.external_ip6
    return next(n.underlay_ip6 for n in topo.nodes if n.netns == ns)


def resolv_files(topo: Topology) -> dict[str, str]:
    """/etc/netns/<ns>/resolv.conf contents: pods get the cluster's, the external client ours."""
    files = {p.netns: POD_RESOLV_CONF for p in topo.pods}
    files[EXTERNAL_NS] = f"nameserver {topo.router_ip}\n"
    return files


# ---------------------------------------------------------------------------------------------
# State


def state_path() -> Path:
    return STATE_DIR / "state.json"


def write_state(state: dict[str, Any]) -> None:
    STATE_DIR.mkdir(mode=0o700, parents=True, exist_ok=True)
    write_json_private(state_path(), state)


def read_state() -> dict[str, Any] | None:
    """The state file, or None when it is missing or unreadable (teardown copes without it)."""
    try:
        data = json.loads(state_path().read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def require_up() -> tuple[dict[str, Any], Topology]:
    """The state and topology of the lab that is up; a LabError says what to do otherwise."""
    state = read_state()
    if not state:
        raise LabError("the lab is not up", hint="run `pathtrace lab up` first")
    if not state.get("complete"):
        raise LabError("the lab is half-built", hint="run `pathtrace lab down`, then `lab up`")
    try:
        topo = topology_from_json(state["topology"])
    except (KeyError, TypeError) as e:
        raise LabError(
            f"the lab state file is corrupt ({e})", hint="run `pathtrace lab down`"
        ) from e
    return state, topo


def topology_to_json(topo: Topology) -> dict[str, Any]:
    return asdict(topo)


def topology_from_json(data: dict[str, Any]) -> Topology:
    return Topology(
        nodes=tuple(NodePlan(**n) for n in data["nodes"]),
        pods=tuple(PodPlan(**p) for p in data["pods"]),
        router_ip=data.get("router_ip", ROUTER_IP),
        external_ip=data.get("external_ip", EXTERNAL_IP),
        dual_stack=bool(data.get("dual_stack", False)),
        router_ip6=data.get("router_ip6", ""),
        external_ip6=data.get("external_ip6", ""),
    )


# ---------------------------------------------------------------------------------------------
# Discovery and teardown (by prefix: no state needed)


def lab_namespaces(runner: Runner) -> list[str]:
    out = runner.run(["ip", "netns", "list"], check=False).stdout
    names = [line.split()[0] for line in out.splitlines() if line.strip()]
    return [n for n in names if n.startswith(PREFIX)]


def host_links(runner: Runner) -> list[str]:
    """`pt-` links in the host namespace (the lab creates none; a crash mid-way could leave some)."""
    out = runner.run(["ip", "-o", "link", "show"], check=False).stdout
    links = []
    for line in out.splitlines():
        parts = line.split(":", 2)
        if len(parts) >= 2:
            name = parts[1].strip().split("@", 1)[0]
            if name.startswith(PREFIX):
                links.append(name)
    return links


def netns_pids(runner: Runner, ns: str) -> list[int]:
    out = runner.run(["ip", "netns", "pids", ns], check=False).stdout
    return [int(x) for x in out.split() if x.isdigit()]


def kill_netns_processes(
    runner: Runner, ns: str, *, grace: float = 2.0, kill: Any = os.kill
) -> None:
    """End every process in `ns`: SIGTERM, then SIGKILL what is left after `grace` seconds."""
    pids = netns_pids(runner, ns)
    for pid in pids:
        try:
            kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + grace
    while pids and time.monotonic() < deadline:
        time.sleep(0.05)
        pids = netns_pids(runner, ns)
    for pid in pids:
        try:
            kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + grace
    while netns_pids(runner, ns) and time.monotonic() < deadline:
        time.sleep(0.05)


def teardown(runner: Runner, log: Any = None) -> list[str]:
    """Remove every `pt-` namespace (processes first), host link and resolv.conf; return what went."""
    removed: list[str] = []
    namespaces = lab_namespaces(runner)
    for ns in namespaces:
        kill_netns_processes(runner, ns)
    for ns in namespaces:
        runner.run(["ip", "netns", "del", ns], check=False)
        removed.append(ns)
        if log:
            log(f"deleted namespace {ns}")
    for link in host_links(runner):
        runner.run(["ip", "link", "del", link], check=False)
        removed.append(link)
    if RESOLV_DIR.is_dir():
        for d in RESOLV_DIR.glob(f"{PREFIX}*"):
            for f in d.iterdir():
                f.unlink(missing_ok=True)
            d.rmdir()
    try:
        state_path().unlink()
    except FileNotFoundError:
        pass
    return removed


def write_resolv(files: dict[str, str]) -> None:
    for ns, text in files.items():
        d = RESOLV_DIR / ns
        d.mkdir(parents=True, exist_ok=True)
        (d / "resolv.conf").write_text(text)


def run_all(runner: Runner, cmds: Sequence[Sequence[str]]) -> None:
    for argv in cmds:
        runner.run(argv)

"""The lab's scenarios, as frozen data.

Pure: a scenario says which namespace sends which request, where to capture, and what the lab's
configuration makes true (path order, translations, outcome). The Services it goes to are
tracer.lab.services'; running it is `tracer.lab.lab`'s job.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tracer.lab.services import (
    INGRESS_HOST,
    KUBE_DNS_IP,
    NODEPORT_CLUSTER,
    NODEPORT_INGRESS,
    NODEPORT_LOCAL,
    NODEPORT_V6,
    SLOW_DELAY_S,
    SOCKET_LB_IP,
    WEB6_IPS,
    WEB_PORT,
    cluster_services,
)
from tracer.lab.topology import EXTERNAL_NS, UNDERLAY_BRIDGE, UNDERLAY_NS, Topology, plan_topology

CURL_MAX_TIME = 4
CLOSED_PORT = 8081  # a port no lab pod listens on
IPV6_SCENARIOS = ("clusterip6", "clusterip6-remote", "nodeport6", "no-endpoints6")


@dataclass(frozen=True)
class Point:
    """A capture point: `netns` to run tcpdump in, `interface` (`any` on nodes)."""

    name: str
    role: str
    netns: str
    node: str
    interface: str = "eth0"
    pod: str | None = None
    namespace: str | None = None


@dataclass(frozen=True)
class MoreRequest:
    """A further request of a scenario that sends several, with what the configuration makes of
    it: the listing outcome for each of curl's results that the configuration allows (the
    kernel picks between them: a stale endpoint is either reported unreachable or times out),
    who answers (a pod's address, or the node whose kernel answers) and where it stops."""

    command: tuple[str, ...]
    frontend: str  # "ip:port" dialled
    outcomes: tuple[tuple[str, str], ...]  # (curl outcome, listing outcome)
    answered_by: str | None = None  # the address that answers
    answered_at_node: str | None = None  # the node whose kernel answers (REJECT, unreachable)
    last_point: str | None = None  # the furthest capture point the request reaches
    server_delay_s: float | None = None


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    client_netns: str
    command: tuple[str, ...]
    points: tuple[Point, ...]
    # Ground truth from the configuration.
    expect_outcome: str  # http-200 | refused | unreachable | timeout | nxdomain
    path: tuple[str, ...]  # point names in the order the request's first packet meets them
    service: str | None = None  # ns/name of the Service the request goes to
    frontend: str | None = None  # "ip:port" the client (or the ingress) dials
    backend: str | None = None  # "ip:port" kube-proxy DNATs to
    snat_node: str | None = None  # node whose masquerade rewrites the source (None: no SNAT)
    conntrack_node: str | None = None  # node whose conntrack holds the DNAT
    server_delay_s: float | None = None
    setup: tuple[tuple[str, tuple[str, ...]], ...] = ()  # (netns, argv) before the request
    cleanup: tuple[tuple[str, tuple[str, ...]], ...] = ()
    notes: tuple[str, ...] = field(default=())
    # Further requests, sent one after the other after `command` (whose truth is above).
    more: tuple[MoreRequest, ...] = ()
    # Pods that get istio-iptables' rules and a sidecar proxy for the run (the mesh).
    sidecars: tuple[str, ...] = ()
    # The client runs in a cgroup v2 with connect4/sendmsg4/recvmsg4 BPF programs serving
    # socket_lb_services() (Cilium's socket LB); kube-proxy has no rule for those Services.
    socket_lb: bool = False


def _curl(url: str, *extra: str) -> tuple[str, ...]:
    return (
        "curl",
        "-sS",
        "-v",
        "--max-time",
        str(CURL_MAX_TIME),
        "-w",
        "\\nHTTP %{http_code} connect=%{time_connect} total=%{time_total}\\n",
        *extra,
        url,
    )


def scenarios(topo: Topology) -> dict[str, Scenario]:
    """Every scenario, by name."""
    n1, n2 = topo.nodes[0], topo.nodes[1]

    def node_pt(n: str) -> Point:
        node = topo.node(n)
        return Point(name=node.name, role="node", netns=node.netns, node=node.name, interface="any")

    def pod_pt(pod: str, role: str, interface: str = "eth0") -> Point:
        p = topo.pod(pod)
        return Point(
            name=p.name,
            role=role,
            netns=p.netns,
            node=p.node,
            interface=interface,
            pod=p.name,
            namespace=p.namespace,
        )

    client = pod_pt("client", "client")
    coredns = pod_pt("coredns", "dns")
    external = Point(name="external", role="client", netns=EXTERNAL_NS, node="external")
    extdns = Point(
        name="extdns", role="dns", netns=UNDERLAY_NS, node="underlay", interface=UNDERLAY_BRIDGE
    )
    web_a, web_b, slow = (
        pod_pt("web-a", "server"),
        pod_pt("web-b", "server"),
        pod_pt("slow", "server"),
    )
    ingress = pod_pt("ingress", "ingress")
    N1, N2 = node_pt(n1.name), node_pt(n2.name)  # noqa: N806
    c = topo.pod("client")
    a, b, s = topo.pod("web-a"), topo.pod("web-b"), topo.pod("slow")
    ing = topo.pod("ingress")
    svc = {x.name: x for x in cluster_services(topo)}
    stale_ip = svc["web-stale"].endpoints[0].ip

    drop_rule = ("-s", c.ip, "-d", b.ip, "-p", "tcp", "--dport", str(WEB_PORT), "-j", "DROP")
    out = [
        Scenario(
            name="clusterip",
            description="pod -> Service `web` by DNS name -> DNAT -> backend on the same node",
            client_netns=c.netns,
            command=_curl("http://web/"),
            points=(client, coredns, N1, web_a),
            expect_outcome="http-200",
            path=("client", n1.name, "web-a"),
            service="default/web",
            frontend=f"{svc['web'].cluster_ip}:80",
            backend=f"{a.ip}:{WEB_PORT}",
            conntrack_node=n1.name,
        ),
        Scenario(
            name="clusterip-remote",
            description="pod -> Service `web-remote` -> DNAT on node1 -> VXLAN -> backend on node2",
            client_netns=c.netns,
            command=_curl("http://web-remote/"),
            points=(client, coredns, N1, N2, web_b),
            expect_outcome="http-200",
            path=("client", n1.name, n2.name, "web-b"),
            service="default/web-remote",
            frontend=f"{svc['web-remote'].cluster_ip}:80",
            backend=f"{b.ip}:{WEB_PORT}",
            conntrack_node=n1.name,
        ),
        Scenario(
            name="nodeport",
            description="external -> node1:30080 (eTP=Cluster): DNAT + SNAT, backend on node2 sees node1",
            client_netns=EXTERNAL_NS,
            command=_curl(f"http://{n1.underlay_ip}:{NODEPORT_CLUSTER}/"),
            points=(external, N1, N2, web_b),
            expect_outcome="http-200",
            path=("external", n1.name, n2.name, "web-b"),
            service="default/web-np",
            frontend=f"{n1.underlay_ip}:{NODEPORT_CLUSTER}",
            backend=f"{b.ip}:{WEB_PORT}",
            snat_node=n1.name,
            conntrack_node=n1.name,
        ),
        Scenario(
            name="nodeport-local",
            description="external -> node2:30081 (eTP=Local), local backend: DNAT only, client IP kept",
            client_netns=EXTERNAL_NS,
            command=_curl(f"http://{n2.underlay_ip}:{NODEPORT_LOCAL}/"),
            points=(external, N2, web_b),
            expect_outcome="http-200",
            path=("external", n2.name, "web-b"),
            service="default/web-local",
            frontend=f"{n2.underlay_ip}:{NODEPORT_LOCAL}",
            backend=f"{b.ip}:{WEB_PORT}",
            conntrack_node=n2.name,
        ),
        Scenario(
            name="ingress",
            description=f"external -> DNS {INGRESS_HOST} -> NodePort -> nginx pod -> Service web-remote -> node2",
            client_netns=EXTERNAL_NS,
            command=_curl(f"http://{INGRESS_HOST}:{NODEPORT_INGRESS}/"),
            points=(external, extdns, N1, ingress, N2, web_b),
            expect_outcome="http-200",
            path=("external", n1.name, "ingress", n1.name, n2.name, "web-b"),
            service="ingress-nginx/ingress-nginx-controller",
            frontend=f"{n1.underlay_ip}:{NODEPORT_INGRESS}",
            backend=f"{ing.ip}:80",
            snat_node=n1.name,
            conntrack_node=n1.name,
            notes=(f"second leg: nginx -> {svc['web-remote'].cluster_ip}:80 -> {b.ip}:{WEB_PORT}",),
        ),
        Scenario(
            name="ingress-hostnet",
            description="external -> nginx in node1's own namespace (hostNetwork) -> Service web-remote",
            client_netns=EXTERNAL_NS,
            command=_curl(f"http://{INGRESS_HOST}/"),
            points=(external, extdns, N1, N2, web_b),
            expect_outcome="http-200",
            path=("external", n1.name, n2.name, "web-b"),
            service="default/web-remote",
            frontend=f"{svc['web-remote'].cluster_ip}:80",
            backend=f"{b.ip}:{WEB_PORT}",
            snat_node=n1.name,
            conntrack_node=n1.name,
            notes=("nginx listens on node1's address: no kube-proxy rule on the client's leg",),
        ),
        Scenario(
            name="no-endpoints",
            description="pod -> Service `web-empty` with no endpoints: filter REJECT (connection refused)",
            client_netns=c.netns,
            command=_curl("http://web-empty/"),
            points=(client, coredns, N1),
            expect_outcome="refused",
            path=("client", n1.name),
            service="default/web-empty",
            frontend=f"{svc['web-empty'].cluster_ip}:80",
        ),
        Scenario(
            name="stale-endpoint",
            description="pod -> Service `web-stale` whose endpoint pod is gone: DNAT to nowhere, SYN retransmissions, then host unreachable",
            client_netns=c.netns,
            command=_curl("http://web-stale/"),
            points=(client, coredns, N1, N2),
            expect_outcome="unreachable",
            path=("client", n1.name, n2.name),
            service="default/web-stale",
            frontend=f"{svc['web-stale'].cluster_ip}:80",
            backend=f"{stale_ip}:{WEB_PORT}",
            conntrack_node=n1.name,
        ),
        Scenario(
            name="local-no-endpoint",
            description="external -> node1:30081 (eTP=Local) with no local endpoint: DROP, client times out",
            client_netns=EXTERNAL_NS,
            command=_curl(f"http://{n1.underlay_ip}:{NODEPORT_LOCAL}/"),
            points=(external, N1),
            expect_outcome="timeout",
            path=("external", n1.name),
            service="default/web-local",
            frontend=f"{n1.underlay_ip}:{NODEPORT_LOCAL}",
        ),
        Scenario(
            name="dns-nxdomain",
            description="pod asks for a wrong name (`wbe`): every search expansion gets NXDOMAIN",
            client_netns=c.netns,
            command=_curl("http://wbe/"),
            points=(client, coredns, N1),
            expect_outcome="nxdomain",
            path=("client", n1.name, "coredns"),
            service="kube-system/kube-dns",
            frontend=f"{KUBE_DNS_IP}:53",
            backend=f"{topo.pod('coredns').ip}:53",
            conntrack_node=n1.name,
        ),
        Scenario(
            name="slow-server",
            description=f"pod -> Service `web-slow` on node2, whose server holds each answer {SLOW_DELAY_S * 1000:.0f} ms",
            client_netns=c.netns,
            command=_curl("http://web-slow/"),
            points=(client, coredns, N1, N2, slow),
            expect_outcome="http-200",
            path=("client", n1.name, n2.name, "slow"),
            service="default/web-slow",
            frontend=f"{svc['web-slow'].cluster_ip}:80",
            backend=f"{s.ip}:{WEB_PORT}",
            conntrack_node=n1.name,
            server_delay_s=SLOW_DELAY_S,
        ),
        Scenario(
            name="drop",
            description="pod -> `web-remote`, but a filter rule on node2 drops the traffic: SYN retransmissions",
            client_netns=c.netns,
            command=_curl("http://web-remote/"),
            points=(client, coredns, N1, N2),
            expect_outcome="timeout",
            path=("client", n1.name, n2.name),
            service="default/web-remote",
            frontend=f"{svc['web-remote'].cluster_ip}:80",
            backend=f"{b.ip}:{WEB_PORT}",
            conntrack_node=n1.name,
            setup=((n2.netns, ("iptables", "-w", "-I", "FORWARD", *drop_rule)),),
            cleanup=((n2.netns, ("iptables", "-w", "-D", "FORWARD", *drop_rule)),),
        ),
        Scenario(
            name="mixed",
            description="pod -> several Services in turn: healthy, slow, reset by a pod, REJECTed "
            "(no endpoints), stale endpoint, dropped: one capture with every outcome",
            client_netns=c.netns,
            command=_curl(f"http://{svc['web'].cluster_ip}/"),
            points=(client, N1, N2, web_a, web_b, slow),
            expect_outcome="http-200",
            path=("client", n1.name, "web-a"),
            service="default/web",
            frontend=f"{svc['web'].cluster_ip}:80",
            backend=f"{a.ip}:{WEB_PORT}",
            conntrack_node=n1.name,
            setup=((n2.netns, ("iptables", "-w", "-I", "FORWARD", *drop_rule)),),
            cleanup=((n2.netns, ("iptables", "-w", "-D", "FORWARD", *drop_rule)),),
            more=(
                MoreRequest(
                    _curl(f"http://{svc['web'].cluster_ip}/"),
                    f"{svc['web'].cluster_ip}:80",
                    (("http-200", "ok"),),
                    answered_by=a.ip,
                    last_point="web-a",
                ),
                MoreRequest(
                    _curl(f"http://{svc['web-slow'].cluster_ip}/"),
                    f"{svc['web-slow'].cluster_ip}:80",
                    (("http-200", "ok"),),
                    answered_by=s.ip,
                    last_point="slow",
                    server_delay_s=SLOW_DELAY_S,
                ),
                # Nothing listens on this port of the pod: its kernel answers the SYN with a RST.
                MoreRequest(
                    _curl(f"http://{b.ip}:{CLOSED_PORT}/"),
                    f"{b.ip}:{CLOSED_PORT}",
                    (("refused", "reset"),),
                    answered_by=b.ip,
                    last_point="web-b",
                ),
                # kube-proxy's filter REJECT on the client's node: ICMP port unreachable.
                MoreRequest(
                    _curl(f"http://{svc['web-empty'].cluster_ip}/"),
                    f"{svc['web-empty'].cluster_ip}:80",
                    (("refused", "rejected"),),
                    answered_at_node=n1.name,
                    last_point=n1.name,
                ),
                # DNAT to an address nobody holds on node2: host unreachable once ARP gives up.
                MoreRequest(
                    _curl(f"http://{svc['web-stale'].cluster_ip}/"),
                    f"{svc['web-stale'].cluster_ip}:80",
                    (("unreachable", "rejected"), ("timeout", "unanswered")),
                    answered_at_node=n2.name,
                    last_point=n2.name,
                ),
                # node2's filter drops what goes to web-b's port 8080: SYNs retransmitted.
                MoreRequest(
                    _curl(f"http://{svc['web-remote'].cluster_ip}/", "--max-time", "2"),
                    f"{svc['web-remote'].cluster_ip}:80",
                    (("timeout", "unanswered"),),
                    last_point=n2.name,
                ),
            ),
        ),
        Scenario(
            name="mesh",
            description="meshed pod -> its sidecar (REDIRECT :15001) -> Service `web-remote` -> DNAT -> VXLAN -> web-b's sidecar (REDIRECT :15006) -> app",
            client_netns=c.netns,
            command=_curl("http://web-remote/"),
            # Meshed pods are captured on `any`: the app-to-sidecar legs are on their loopback.
            points=(
                pod_pt("client", "client", "any"),
                coredns,
                N1,
                N2,
                pod_pt("web-b", "server", "any"),
            ),
            expect_outcome="http-200",
            path=("client", n1.name, n2.name, "web-b"),
            service="default/web-remote",
            frontend=f"{svc['web-remote'].cluster_ip}:80",
            backend=f"{b.ip}:{WEB_PORT}",
            conntrack_node=n1.name,
            sidecars=("client", "web-b"),
            notes=(
                "legs: app -> 127.0.0.1:15001 (client loopback), sidecar -> ClusterIP (the wire), "
                f"127.0.0.6 -> {b.ip}:{WEB_PORT} (web-b loopback)",
            ),
        ),
        Scenario(
            name="ebpf-socket-lb",
            description="pod -> Service `web-ebpf`: a cgroup connect4 BPF program connects the socket straight to web-b on node2; no kube-proxy rule, no DNAT on any wire",
            client_netns=c.netns,
            command=_curl("http://web-ebpf/"),
            points=(client, coredns, N1, N2, web_b),
            expect_outcome="http-200",
            path=("client", n1.name, n2.name, "web-b"),
            service="default/web-ebpf",
            frontend=f"{SOCKET_LB_IP}:80",
            backend=f"{b.ip}:{WEB_PORT}",
            socket_lb=True,
        ),
    ]
    if topo.dual_stack:
        out += _ipv6_scenarios(topo, client, coredns, external, web_a, web_b, N1, N2)
    return {sc.name: sc for sc in out}


def _hostport(ip: str, port: int) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def _ipv6_scenarios(
    topo: Topology,
    client: Point,
    coredns: Point,
    external: Point,
    web_a: Point,
    web_b: Point,
    n1_point: Point,
    n2_point: Point,
) -> list[Scenario]:
    """The dual-stack lab's IPv6 scenarios: the names resolve to AAAA records only, so curl
    connects over IPv6; kube-proxy's IPv6 rules (ip6tables or nft ip6) translate."""
    n1, n2 = topo.nodes[0], topo.nodes[1]
    c, a, b = topo.pod("client"), topo.pod("web-a"), topo.pod("web-b")
    return [
        Scenario(
            name="clusterip6",
            description="pod -> IPv6 Service `web6` by name (AAAA) -> ip6tables DNAT -> backend on the same node",
            client_netns=c.netns,
            command=_curl("http://web6/"),
            points=(client, coredns, n1_point, web_a),
            expect_outcome="http-200",
            path=("client", n1.name, "web-a"),
            service="default/web6",
            frontend=_hostport(WEB6_IPS["web6"], 80),
            backend=_hostport(a.ip6, WEB_PORT),
            conntrack_node=n1.name,
        ),
        Scenario(
            name="clusterip6-remote",
            description="pod -> IPv6 Service `web6-remote` -> DNAT on node1 -> IPv6 over VXLAN -> backend on node2",
            client_netns=c.netns,
            command=_curl("http://web6-remote/"),
            points=(client, coredns, n1_point, n2_point, web_b),
            expect_outcome="http-200",
            path=("client", n1.name, n2.name, "web-b"),
            service="default/web6-remote",
            frontend=_hostport(WEB6_IPS["web6-remote"], 80),
            backend=_hostport(b.ip6, WEB_PORT),
            conntrack_node=n1.name,
        ),
        Scenario(
            name="nodeport6",
            description=f"external IPv6 client -> [node1]:{NODEPORT_V6} (eTP=Cluster): DNAT + masquerade, backend on node2",
            client_netns=EXTERNAL_NS,
            command=_curl(f"http://[{n1.underlay_ip6}]:{NODEPORT_V6}/"),
            points=(external, n1_point, n2_point, web_b),
            expect_outcome="http-200",
            path=("external", n1.name, n2.name, "web-b"),
            service="default/web6-np",
            frontend=_hostport(n1.underlay_ip6, NODEPORT_V6),
            backend=_hostport(b.ip6, WEB_PORT),
            snat_node=n1.name,
            conntrack_node=n1.name,
        ),
        Scenario(
            name="no-endpoints6",
            description="pod -> IPv6 Service `web6-empty` with no endpoints: ip6tables REJECT (ICMPv6 port unreachable)",
            client_netns=c.netns,
            command=_curl("http://web6-empty/"),
            points=(client, coredns, n1_point),
            expect_outcome="refused",
            path=("client", n1.name),
            service="default/web6-empty",
            frontend=_hostport(WEB6_IPS["web6-empty"], 80),
        ),
    ]


def scenario_names() -> tuple[str, ...]:
    """Every scenario's name, the dual-stack lab's IPv6 ones included."""
    return tuple(scenarios(plan_topology(dual_stack=True)))


def describe(topo: Topology | None = None) -> list[tuple[str, str]]:
    """(name, description) of every scenario; the IPv6 ones say they need the dual-stack lab."""
    topo = topo or plan_topology(dual_stack=True)
    return [
        (s.name, s.description + (" [dual-stack lab]" if s.name in IPV6_SCENARIOS else ""))
        for s in scenarios(topo).values()
    ]

"""kube-proxy's IPv6 proxier output: the same rules as IPv4 except where pkg/proxy/iptables and
pkg/proxy/nftables branch on the family (localhost NodePorts, the nft family and address types)."""

from __future__ import annotations

from tracer.lab import kubeproxy as kp
from tracer.lab.lab import kube_proxy_commands
from tracer.lab.services import cluster_services, ipv6_services
from tracer.lab.topology import build_commands, plan_topology

NODE6 = kp.NodeInfo(
    name="node1", ips=("fd00:50::11",), pod_cidr="fd00:10:244:1::/64",
    cluster_cidr="fd00:10:244::/56", service_cidr="fd00:10:96::/112",
)  # fmt: skip


def svc6(**kw: object) -> kp.Service:
    return kp.Service(
        namespace="default",
        name="web6",
        cluster_ip="fd00:10:96::100",
        ports=(kp.ServicePort(port=80, target_port=8080, name="http", node_port=30082),),
        endpoints=(kp.Endpoint("fd00:10:244:2::3", node="node2"),),
        **kw,  # type: ignore[arg-type]
    )


def test_ip6tables_rules_verbatim() -> None:
    s = svc6()
    p = s.ports[0]
    sep, svc = kp.sep_chain(s, p, "fd00:10:244:2::3"), kp.svc_chain(s, p)
    text = kp.iptables_restore([s], NODE6).splitlines()
    for line in (
        '-A KUBE-SERVICES -m comment --comment "default/web6:http cluster IP" -m tcp -p tcp '
        f"-d fd00:10:96::100 --dport 80 -j {svc}",
        f'-A {svc} -m comment --comment "default/web6:http cluster IP" -m tcp -p tcp '
        f"-d fd00:10:96::100 --dport 80 ! -s fd00:10:244::/56 -j KUBE-MARK-MASQ",
        f'-A {svc} -m comment --comment "default/web6:http -> [fd00:10:244:2::3]:8080" -j {sep}',
        f"-A {sep} -m comment --comment default/web6:http -s fd00:10:244:2::3 -j KUBE-MARK-MASQ",
        f"-A {sep} -m comment --comment default/web6:http -m tcp -p tcp -j DNAT "
        "--to-destination [fd00:10:244:2::3]:8080",
        # IPv6 never reaches NodePorts over ::1 (proxier.go: `if isIPv6 { ... "::1/128" }`)
        '-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must '
        'be the last rule in this chain" -m addrtype --dst-type LOCAL ! -d ::1/128 '
        "-j KUBE-NODEPORTS",
    ):
        assert line in text, line
    # KUBE-FIREWALL's localnet rule is IPv4's only (`!isIPv6 && localhostNodePorts`).
    assert not [x for x in text if "KUBE-FIREWALL" in x or "127.0.0.0/8" in x]
    assert not [j for j in kp.jump_rules(ipv6=True) if j.target == kp.KUBE_FIREWALL]


def test_nft_ip6_table() -> None:
    text = kp.nft_ruleset([svc6()], NODE6)
    assert "add table ip6 kube-proxy" in text and " ip kube-proxy" not in text
    assert "ipv4_addr" not in text and "type ipv6_addr" in text
    assert " ip daddr " not in text and "ip6 daddr . meta l4proto . th dport vmap" in text
    assert "dnat to [fd00:10:244:2::3]:8080" in text
    assert "ip6 saddr != fd00:10:244::/56 jump mark-for-masquerade" in text


def test_dual_stack_lab_gets_one_proxier_per_family() -> None:
    topo = plan_topology(dual_stack=True)
    v6 = ipv6_services(topo)
    assert {s.name for s in v6} == {"web6", "web6-remote", "web6-np", "web6-empty"}
    assert all(":" in e.ip for s in v6 for e in s.endpoints)
    cmds = kube_proxy_commands(topo, "iptables")
    restores = [(argv, stdin) for argv, stdin in cmds if stdin is not None]
    for node in topo.nodes:
        mine = [(a, s) for a, s in restores if node.netns in a]
        (v4,) = [s for a, s in mine if "iptables-restore" in a]
        (v6text,) = [s for a, s in mine if "ip6tables-restore" in a]
        assert v4 is not None and v6text is not None
        assert "fd00:" not in v4 and "10.96.0.100" in v4
        assert "fd00:10:96::100" in v6text and "10.96." not in v6text
    nft = [s for _, s in kube_proxy_commands(topo, "nftables") if s]
    assert len(nft) == 2 * len(topo.nodes)
    # The IPv4-only lab is unchanged: no IPv6 Service, no ip6tables.
    plain = plan_topology()
    assert ipv6_services(plain) == ()
    assert all(":" not in s.cluster_ip for s in cluster_services(plain))
    assert not [a for a, _ in kube_proxy_commands(plain, "iptables") if "ip6tables" in a[4]]


def test_dual_stack_topology_adds_ipv6_beside_ipv4() -> None:
    topo = plan_topology(dual_stack=True)
    client = topo.pod("client")
    assert (client.ip, client.ip6) == ("10.244.1.2", "fd00:10:244:1::2")
    text = [" ".join(c) for c in build_commands(topo)]
    assert any("disable_ipv6=0" in c for c in text)
    assert any("addr add fd00:10:244:1::2/64 dev eth0 nodad" in c for c in text)
    assert any(
        "-6 route add fd00:10:244:2::/64 via fd00:10:244:2:: dev flannel.1 onlink" in c
        for c in text
    )
    assert any("bridge-nf-call-ip6tables=1" in c for c in text)
    plain = [" ".join(c) for c in build_commands(plan_topology())]
    assert all("fd00:" not in c for c in plain) and any("disable_ipv6=1" in c for c in plain)


def test_nft_endpoint_chain_of_an_ipv6_endpoint_has_no_colons() -> None:
    s = svc6()
    name = kp.nft_endpoint_chain(s, s.ports[0], "fd00:10:244:2::3")
    assert name.endswith("-default/web6/tcp/http__fd00.10.244.2..3/8080") and ":" not in name

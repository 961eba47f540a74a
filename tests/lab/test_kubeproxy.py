"""The rule generator against the verbatim lines of kube-proxy's sources (reference §1, §2)."""

from __future__ import annotations

import math
import re

from hypothesis import given
from hypothesis import strategies as st

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


def test_chain_hashes_match_kube_proxy() -> None:
    s = svc1()
    p = s.ports[0]
    assert kp.svc_chain(s, p) == "KUBE-SVC-XPGD46QRK7WJZT7O"
    assert kp.sep_chain(s, p, "10.180.0.1") == "KUBE-SEP-SXIVWICOYRO3J4NJ"
    unnamed = kp.Service("ns1", "svc1", "172.30.0.41", (kp.ServicePort(80, 80),))
    assert kp.svc_chain(unnamed, unnamed.ports[0]) == "KUBE-SVC-AQI2S6QIMU7PVVRP"
    assert kp.nft_service_chain(s, p) == "service-ULMVA6XW-ns1/svc1/tcp/p80"
    assert kp.nft_endpoint_chain(s, p, "10.180.0.1") == (
        "endpoint-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80"
    )


def test_clusterip_rules_verbatim() -> None:
    text = kp.iptables_restore([svc1()], NODE).splitlines()
    for line in (
        '-A KUBE-SERVICES -m comment --comment "ns1/svc1:p80 cluster IP" -m tcp -p tcp -d 172.30.0.41 --dport 80 -j KUBE-SVC-XPGD46QRK7WJZT7O',
        '-A KUBE-SVC-XPGD46QRK7WJZT7O -m comment --comment "ns1/svc1:p80 cluster IP" -m tcp -p tcp -d 172.30.0.41 --dport 80 ! -s 10.0.0.0/8 -j KUBE-MARK-MASQ',
        '-A KUBE-SVC-XPGD46QRK7WJZT7O -m comment --comment "ns1/svc1:p80 -> 10.180.0.1:80" -j KUBE-SEP-SXIVWICOYRO3J4NJ',
        "-A KUBE-SEP-SXIVWICOYRO3J4NJ -m comment --comment ns1/svc1:p80 -s 10.180.0.1 -j KUBE-MARK-MASQ",
        "-A KUBE-SEP-SXIVWICOYRO3J4NJ -m comment --comment ns1/svc1:p80 -m tcp -p tcp -j DNAT --to-destination 10.180.0.1:80",
        ":KUBE-SVC-XPGD46QRK7WJZT7O - [0:0]",
    ):
        assert line in text, line


def test_masquerade_rules_verbatim() -> None:
    text = kp.iptables_restore([], NODE).splitlines()
    assert "-A KUBE-MARK-MASQ -j MARK --or-mark 0x4000" in text
    assert "-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN" in text
    assert "-A KUBE-POSTROUTING -j MARK --xor-mark 0x4000" in text
    assert (
        '-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" '
        "-j MASQUERADE --random-fully"
    ) in text
    no_rf = kp.iptables_restore([], NODE, kp.ProxyOptions(random_fully=False)).splitlines()
    assert no_rf[no_rf.index("-A KUBE-MARK-MASQ -j MARK --or-mark 0x4000") - 1].endswith(
        "-j MASQUERADE"
    )


def test_nodeports_is_the_last_rule_of_kube_services() -> None:
    s = kp.Service(
        "ns2", "svc2", "172.30.0.42",
        (kp.ServicePort(80, 80, name="p80", node_port=3001),),
        (kp.Endpoint("10.180.0.2", node="node1"),),
    )  # fmt: skip
    lines = kp.iptables_restore([s, svc1()], NODE).splitlines()
    svc_rules = [line for line in lines if line.startswith("-A KUBE-SERVICES ")]
    assert svc_rules[-1] == (
        '-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be '
        'the last rule in this chain" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS'
    )
    ext = kp.ext_chain(s, s.ports[0])
    assert (
        f"-A KUBE-NODEPORTS -m comment --comment ns2/svc2:p80 -m tcp -p tcp --dport 3001 -j {ext}"
        in lines
    )
    assert (
        f'-A {ext} -m comment --comment "masquerade traffic for ns2/svc2:p80 external '
        'destinations" -j KUBE-MARK-MASQ'
    ) in lines
    assert f"-A {ext} -j {kp.svc_chain(s, s.ports[0])}" in lines


def test_external_local_without_local_endpoint_drops() -> None:
    s = kp.Service(
        "ns2", "svc2", "172.30.0.42",
        (kp.ServicePort(80, 80, name="p80", node_port=3001),),
        (kp.Endpoint("10.180.0.2", node="node2"),),
        external_traffic_policy="Local",
    )  # fmt: skip
    lines = kp.iptables_restore([s], NODE).splitlines()
    assert (
        '-A KUBE-EXTERNAL-SERVICES -m comment --comment "ns2/svc2:p80 has no local endpoints" '
        "-m addrtype --dst-type LOCAL -m tcp -p tcp --dport 3001 -j DROP"
    ) in lines
    ext = kp.ext_chain(s, s.ports[0])
    assert (
        f'-A {ext} -m comment --comment "pod traffic for ns2/svc2:p80 external destinations" '
        f"-s 10.0.0.0/8 -j {kp.svc_chain(s, s.ports[0])}"
    ) in lines
    assert not any(line.startswith(f"-A {kp.svl_chain(s, s.ports[0])}") for line in lines)
    # On the node that has the endpoint, KUBE-EXT falls through to KUBE-SVL.
    node2 = kp.NodeInfo("node2", ("192.168.0.3",), "10.0.2.0/24", "10.0.0.0/8")
    lines2 = kp.iptables_restore([s], node2).splitlines()
    assert f"-A {ext} -j {kp.svl_chain(s, s.ports[0])}" in lines2


def test_no_endpoints_rejects_in_filter() -> None:
    s = kp.Service("ns6", "svc6", "172.30.0.46", (kp.ServicePort(80, 80, name="p80"),))
    text = kp.iptables_restore([s], NODE)
    filt = text.split("*nat")[0].splitlines()
    assert (
        '-A KUBE-SERVICES -m comment --comment "ns6/svc6:p80 has no endpoints" -m tcp -p tcp '
        "-d 172.30.0.46 --dport 80 -j REJECT"
    ) in filt
    assert "KUBE-SVC-" not in text


def test_session_affinity_uses_recent() -> None:
    lines = kp.iptables_restore([svc1(session_affinity="ClientIP")], NODE).splitlines()
    assert (
        '-A KUBE-SVC-XPGD46QRK7WJZT7O -m comment --comment "ns1/svc1:p80 -> 10.180.0.1:80" '
        "-m recent --name KUBE-SEP-SXIVWICOYRO3J4NJ --rcheck --seconds 10800 --reap "
        "-j KUBE-SEP-SXIVWICOYRO3J4NJ"
    ) in lines
    assert (
        "-A KUBE-SEP-SXIVWICOYRO3J4NJ -m comment --comment ns1/svc1:p80 -m recent --name "
        "KUBE-SEP-SXIVWICOYRO3J4NJ --set -m tcp -p tcp -j DNAT --to-destination 10.180.0.1:80"
    ) in lines


def test_three_endpoints_probabilities() -> None:
    s = kp.Service(
        "ns1", "svc1", "172.30.0.41", (kp.ServicePort(80, 80, name="p80"),),
        tuple(kp.Endpoint(f"10.0.1.{i}") for i in (1, 2, 3)),
    )  # fmt: skip
    chain = kp.svc_chain(s, s.ports[0])
    rules = [
        line
        for line in kp.iptables_restore([s], NODE).splitlines()
        if line.startswith(f"-A {chain} ") and "KUBE-SEP" in line
    ]
    assert "--probability 0.3333333333" in rules[0]
    assert "--probability 0.5000000000" in rules[1]
    assert "statistic" not in rules[2]


@given(st.integers(min_value=1, max_value=40))
def test_every_endpoint_gets_an_equal_share(n: int) -> None:
    s = kp.Service(
        "ns", "s", "172.30.0.9", (kp.ServicePort(80, 8080, name="http"),),
        tuple(kp.Endpoint(f"10.1.{i // 250}.{i % 250 + 1}") for i in range(n)),
    )  # fmt: skip
    chain = kp.svc_chain(s, s.ports[0])
    rules = [
        line
        for line in kp.iptables_restore([s], NODE).splitlines()
        if line.startswith(f"-A {chain} ") and "-j KUBE-SEP-" in line
    ]
    assert len(rules) == n
    remaining = 1.0
    for line in rules:
        m = re.search(r"--probability (\S+)", line)
        p = float(m.group(1)) if m else 1.0
        assert math.isclose(remaining * p, 1.0 / n, rel_tol=1e-6)
        remaining *= 1 - p


def test_jump_rules_render_like_kube_proxy() -> None:
    rendered = [j.render() for j in kp.jump_rules()]
    assert (
        '-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES'
        in rendered
    )
    assert (
        '-A FORWARD -m conntrack --ctstate NEW -m comment --comment "kubernetes service portals" '
        "-j KUBE-SERVICES"
    ) in rendered
    assert (
        '-A POSTROUTING -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING'
        in rendered
    )


def test_nft_lines_verbatim() -> None:
    s4 = kp.Service(
        "ns4", "svc4", "172.30.0.44", (kp.ServicePort(80, 80, name="p80"),),
        (kp.Endpoint("10.180.0.4"), kp.Endpoint("10.180.0.5")),
    )  # fmt: skip
    lines = kp.nft_ruleset([svc1(), s4], NODE).splitlines()
    for line in (
        "add rule ip kube-proxy services ip daddr . meta l4proto . th dport vmap @service-ips",
        "add rule ip kube-proxy services ip daddr @nodeport-ips meta l4proto . th dport vmap @service-nodeports",
        "add rule ip kube-proxy service-ULMVA6XW-ns1/svc1/tcp/p80 ip daddr 172.30.0.41 ip saddr != 10.0.0.0/8 jump mark-for-masquerade",
        "add rule ip kube-proxy service-LAUZTJTB-ns4/svc4/tcp/p80 numgen random mod 2 vmap { 0 : goto endpoint-UNZV3OEC-ns4/svc4/tcp/p80__10.180.0.4/80 , 1 : goto endpoint-5RFCDDV7-ns4/svc4/tcp/p80__10.180.0.5/80 }",
        "add rule ip kube-proxy endpoint-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80 ip saddr 10.180.0.1 jump mark-for-masquerade",
        "add rule ip kube-proxy endpoint-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80 meta l4proto tcp dnat to 10.180.0.1:80",
        "add rule ip kube-proxy masquerading masquerade fully-random",
    ):
        assert line in lines, line


def test_nft_no_endpoints_reject_and_local_drop() -> None:
    s6 = kp.Service("ns6", "svc6", "172.30.0.46", (kp.ServicePort(80, 80, name="p80"),))
    s2 = kp.Service(
        "ns2", "svc2", "172.30.0.42", (kp.ServicePort(80, 80, name="p80", node_port=3003),),
        (kp.Endpoint("10.180.0.2", node="node2"),), external_traffic_policy="Local",
    )  # fmt: skip
    text = kp.nft_ruleset([s6, s2], NODE)
    assert '172.30.0.46 . tcp . 80 comment "ns6/svc6:p80" : goto reject-chain' in text
    assert 'tcp . 3003 comment "ns2/svc2:p80" : drop' in text

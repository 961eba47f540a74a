"""The iptables payload and jump rules against the verbatim lines of kube-proxy's sources (reference §1)."""

from __future__ import annotations

import math
import re

from hypothesis import given
from hypothesis import strategies as st

from tests.lab.kubeproxy.sample import NODE, svc1
from tracer.lab import kubeproxy as kp


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

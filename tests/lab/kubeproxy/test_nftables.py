"""The nft file against the verbatim lines of kube-proxy's nftables proxier (reference §2)."""

from __future__ import annotations

from tests.lab.kubeproxy.sample import NODE, svc1
from tracer.lab import kubeproxy as kp


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

"""Chain and set names against the hashes kube-proxy's sources compute (reference §1, §2)."""

from __future__ import annotations

from tests.lab.kubeproxy.sample import svc1
from tracer.lab import kubeproxy as kp


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

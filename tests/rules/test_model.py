"""Address helpers and service names from nftables chain names."""

from __future__ import annotations

from tracer.rules.model import Node, in_network, service_from_chain


def test_in_network() -> None:
    assert in_network("10.244.1.7", "10.244.0.0/16")
    assert in_network("10.96.0.1", "10.96.0.1/32")
    assert not in_network("10.96.0.1", "fd00::/8")
    assert not in_network("nonsense", "10.0.0.0/8")


def test_node_local_addresses_include_loopback() -> None:
    n = Node(("192.168.49.2",))
    assert n.is_local("192.168.49.2") and n.is_local("127.0.0.1") and not n.is_local("10.0.0.1")


def test_service_from_chain() -> None:
    assert service_from_chain("service-ULMVA6XW-ns1/svc1/tcp/p80") == "ns1/svc1:p80"
    assert service_from_chain("endpoint-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80") == "ns1/svc1:p80"
    assert service_from_chain("service-CDROZJMR-default/api/tcp/") == "default/api"
    assert service_from_chain("services") is None

"""Golden walks over a real `nft list ruleset` of kube-proxy's nftables mode."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.rules.make_data import NODE_IP
from tests.rules.scenarios import SCENARIOS, Scenario
from tracer.model import Endpoint
from tracer.rules.model import Node, Packet
from tracer.rules.nft import parse_nft_ruleset
from tracer.rules.nft_walk import endpoint_of_chain, walk_nft

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="module")
def ruleset():  # type: ignore[no-untyped-def]
    return parse_nft_ruleset((DATA / "nft-ruleset.txt").read_text())


@pytest.mark.parametrize("sc", SCENARIOS, ids=lambda s: s.id)
def test_walk_matches_the_configuration(ruleset, sc: Scenario) -> None:  # type: ignore[no-untyped-def]
    packet = Packet(sc.proto, Endpoint(sc.src, 40000), Endpoint(sc.dst, sc.dport), sc.entry)  # type: ignore[arg-type]
    r = walk_nft(ruleset, packet, Node((NODE_IP,)))
    assert r.verdict == sc.verdict
    assert {e.address for e in r.endpoints} == set(sc.endpoints)
    for e in r.endpoints:
        assert e.probability == pytest.approx(1 / len(sc.endpoints))
    assert r.masquerade is sc.masquerade
    assert any("affinity" in n for n in r.notes) is sc.affinity
    assert r.warnings == ()


def test_wrong_port_on_a_live_cluster_ip_is_rejected(ruleset) -> None:  # type: ignore[no-untyped-def]
    r = walk_nft(
        ruleset,
        Packet("tcp", Endpoint("10.244.1.7"), Endpoint("10.96.0.100", 443)),
        Node((NODE_IP,)),
    )
    assert r.verdict == "REJECT"
    assert r.rules[-1].comment == "Reject traffic to invalid ports of ClusterIPs"


def test_unallocated_cluster_ip_is_dropped(ruleset) -> None:  # type: ignore[no-untyped-def]
    r = walk_nft(
        ruleset,
        Packet("tcp", Endpoint("10.244.1.7"), Endpoint("10.96.0.200", 80)),
        Node((NODE_IP,)),
    )
    assert r.verdict == "DROP"


def test_no_endpoint_element_comment_names_the_service(ruleset) -> None:  # type: ignore[no-untyped-def]
    r = walk_nft(
        ruleset,
        Packet("tcp", Endpoint("10.244.1.7"), Endpoint("10.96.0.106", 80)),
        Node((NODE_IP,)),
    )
    assert r.service == "default/empty:http"
    assert any(h.comment == "default/empty:http" for h in r.rules)


def test_endpoint_of_chain() -> None:
    assert endpoint_of_chain("endpoint-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80") == "10.180.0.1:80"
    assert endpoint_of_chain("service-ULMVA6XW-ns1/svc1/tcp/p80") is None


def test_a_ruleset_that_is_not_kube_proxys_warns() -> None:
    rs = parse_nft_ruleset(
        "table inet filter {\n\tchain input {\n\t\ttype filter hook input priority filter; policy accept;\n\t\ttcp dport 22 accept\n\t}\n}\n"
    )
    r = walk_nft(rs, Packet("tcp", Endpoint("10.0.0.1"), Endpoint("10.0.0.2", 80)), Node())
    assert r.verdict == "NO-MATCH"
    assert any("not kube-proxy" in w for w in r.warnings)

"""Golden walks over real iptables-save dumps (nf_tables, legacy, large-cluster without comments)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.rules.make_data import NODE_IP
from tests.rules.scenarios import SCENARIOS, Scenario
from tracer.model import Endpoint
from tracer.rules.iptables import parse_iptables_save
from tracer.rules.iptables_walk import parse_to_destination, walk_iptables
from tracer.rules.model import Node, Packet

DATA = Path(__file__).parent / "data"
DUMPS = ("iptables-nft-save.txt", "iptables-legacy-save.txt", "iptables-large-save.txt")


@pytest.mark.parametrize("dump", DUMPS)
@pytest.mark.parametrize("sc", SCENARIOS, ids=lambda s: s.id)
def test_walk_matches_the_configuration(dump: str, sc: Scenario) -> None:
    rs = parse_iptables_save((DATA / dump).read_text())
    packet = Packet(sc.proto, Endpoint(sc.src, 40000), Endpoint(sc.dst, sc.dport), sc.entry)  # type: ignore[arg-type]
    r = walk_iptables(rs, packet, Node((NODE_IP,)))
    assert r.verdict == sc.verdict
    assert {e.address for e in r.endpoints} == set(sc.endpoints)
    for e in r.endpoints:
        assert e.probability == pytest.approx(1 / len(sc.endpoints), abs=1e-6)
    assert r.masquerade is sc.masquerade
    assert any("affinity" in n for n in r.notes) is sc.affinity
    assert r.warnings == ()


def test_hairpin_masquerades_only_the_branch_that_picks_the_client() -> None:
    rs = parse_iptables_save((DATA / "iptables-nft-save.txt").read_text())
    r = walk_iptables(
        rs, Packet("tcp", Endpoint("10.244.1.10"), Endpoint("10.96.0.100", 80)), Node((NODE_IP,))
    )
    masq = {e.address: e.masquerade for e in r.endpoints}
    assert masq == {"10.244.1.10:8080": True, "10.244.2.11:8080": False, "10.244.3.12:8080": False}
    assert any("hairpin" in w for w in r.warnings)


def test_rules_list_the_service_rule_with_its_comment() -> None:
    rs = parse_iptables_save((DATA / "iptables-nft-save.txt").read_text())
    r = walk_iptables(
        rs, Packet("tcp", Endpoint("10.244.1.7"), Endpoint("10.96.0.100", 80)), Node((NODE_IP,))
    )
    svc_rules = [h for h in r.rules if h.table == "nat" and h.chain == "KUBE-SERVICES"]
    assert svc_rules[0].comment == "default/web:http cluster IP"
    assert r.service == "default/web:http"
    assert r.rules[0].chain == "PREROUTING"


def test_local_nodeport_on_loopback_uses_the_nfacct_rule() -> None:
    rs = parse_iptables_save((DATA / "iptables-nft-save.txt").read_text())
    r = walk_iptables(
        rs,
        Packet("tcp", Endpoint("127.0.0.1"), Endpoint("127.0.0.1", 30080), "local"),
        Node((NODE_IP,)),
    )
    assert r.verdict == "DNAT"
    assert any("nfacct" in h.rule for h in r.rules)


def test_missing_hook_chains_fall_back_to_kube_services_with_a_warning() -> None:
    text = "\n".join(
        line
        for line in (DATA / "iptables-nft-save.txt").read_text().splitlines()
        if not line.startswith(
            ("-A PREROUTING", "-A OUTPUT", "-A POSTROUTING", "-A FORWARD", "-A INPUT")
        )
    )
    rs = parse_iptables_save(text)
    r = walk_iptables(
        rs, Packet("tcp", Endpoint("10.244.1.7"), Endpoint("10.96.0.106", 80)), Node((NODE_IP,))
    )
    assert r.verdict == "REJECT"
    assert any("walked" in w for w in r.warnings)


def test_upstream_restore_payload_without_mark_chain_still_marks() -> None:
    text = """*nat
:KUBE-SERVICES - [0:0]
:KUBE-SVC-X - [0:0]
:KUBE-SEP-A - [0:0]
-A KUBE-SERVICES -m comment --comment "ns1/svc1:p80 cluster IP" -m tcp -p tcp -d 172.30.0.41 --dport 80 -j KUBE-SVC-X
-A KUBE-SVC-X -m comment --comment "ns1/svc1:p80 cluster IP" -m tcp -p tcp -d 172.30.0.41 --dport 80 ! -s 10.0.0.0/8 -j KUBE-MARK-MASQ
-A KUBE-SVC-X -m comment --comment "ns1/svc1:p80 -> 10.180.0.1:80" -j KUBE-SEP-A
-A KUBE-SEP-A -m comment --comment ns1/svc1:p80 -m tcp -p tcp -j DNAT --to-destination 10.180.0.1:80
COMMIT
"""
    rs = parse_iptables_save(text)
    r = walk_iptables(
        rs,
        Packet("tcp", Endpoint("192.168.0.2"), Endpoint("172.30.0.41", 80), "local"),
        Node(("192.168.0.2",)),
    )
    assert r.verdict == "DNAT"
    assert [e.address for e in r.endpoints] == ["10.180.0.1:80"]
    assert any("KUBE-MARK-MASQ is missing" in w for w in r.warnings)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("10.244.1.10:8080", Endpoint("10.244.1.10", 8080)),
        ("10.244.1.10", Endpoint("10.244.1.10")),
        ("[fd00::1]:80", Endpoint("fd00::1", 80)),
        ("1.2.3.4:80-90", Endpoint("1.2.3.4", 80)),
    ],
)
def test_parse_to_destination(text: str, expected: Endpoint) -> None:
    assert parse_to_destination(text) == expected

"""Folding branches into a result."""

from __future__ import annotations

from tracer.model import Endpoint
from tracer.rules.model import Branch, Packet, RuleHit
from tracer.rules.result import assemble, fraction_text

P = Packet("tcp", Endpoint("10.0.0.1"), Endpoint("10.96.0.1", 80))


def test_fraction_text() -> None:
    assert fraction_text(0.33333333349) == "1/3"
    assert fraction_text(1.0) == "1"
    assert fraction_text(0.123456789) == "0.123"


def test_same_endpoint_on_two_branches_adds_up_and_rules_are_merged_once() -> None:
    a = RuleHit("nat", "X", "-A X -j Y")
    b = [
        Branch(0.25, "DNAT", Endpoint("10.1.1.1", 80), False, (a,)),
        Branch(0.75, "DNAT", Endpoint("10.1.1.1", 80), False, (a,)),
    ]
    r = assemble("iptables", P, b, [], [])
    assert [(e.address, e.probability) for e in r.endpoints] == [("10.1.1.1:80", 1.0)]
    assert r.rules == (a,)


def test_mixed_outcomes_pick_the_likelier_and_warn() -> None:
    b = [
        Branch(0.75, "DROP", None, False, ()),
        Branch(0.25, "DNAT", Endpoint("10.1.1.1", 80), False, ()),
    ]
    r = assemble("iptables", P, b, [], [])
    assert r.verdict == "DROP"
    assert any("depends on the random endpoint choice" in w for w in r.warnings)


def test_json_shape() -> None:
    r = assemble(
        "iptables",
        P,
        [Branch(1 / 3, "DNAT", Endpoint("10.1.1.1", 80), True, (RuleHit("nat", "X", "r", "c"),))],
        [],
        [],
    )
    assert r.to_json() == {
        "verdict": "DNAT",
        "endpoints": [{"address": "10.1.1.1:80", "probability": 0.333}],
        "masquerade": True,
        "rules": [{"table": "nat", "chain": "X", "rule": "r", "comment": "c"}],
        "warnings": [],
    }

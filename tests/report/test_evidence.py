"""Rule evidence as text and JSON: the compact view keeps the rules that decided and drops the
jumps that did not; the full view and the JSON keep every rule walked."""

from __future__ import annotations

import re
from dataclasses import replace

from tracer.explain.evidence import Finding, PathEvidence, RewriteEvidence
from tracer.model import Endpoint, Hop, Latency, Path, Request, Tuple5
from tracer.report.evidence import (
    decisive,
    evidence_json,
    render_evidence,
    render_evidence_compact,
)
from tracer.rules.model import EndpointChoice, RuleHit

BEFORE = Tuple5("tcp", Endpoint("10.244.1.2", 5000), Endpoint("10.96.0.100", 80))
AFTER = Tuple5("tcp", Endpoint("10.244.1.2", 5000), Endpoint("10.244.2.3", 8080))
# As kube-proxy writes them (iptables-save), in the order a walk meets them.
PORTAL = RuleHit(
    "nat",
    "PREROUTING",
    '-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
)
SERVICES = RuleHit(
    "nat",
    "KUBE-SERVICES",
    "-A KUBE-SERVICES -d 10.96.0.100/32 -p tcp -m tcp --dport 80 -j KUBE-SVC-AAA",
)
MARK = RuleHit(
    "nat", "KUBE-SVC-AAA", "-A KUBE-SVC-AAA ! -s 10.244.0.0/16 -d 10.96.0.100/32 -j KUBE-MARK-MASQ"
)
PICK = RuleHit(
    "nat",
    "KUBE-SVC-AAA",
    "-A KUBE-SVC-AAA -m statistic --mode random --probability 0.50000000000 -j KUBE-SEP-BBB",
)
DNAT = RuleHit(
    "nat", "KUBE-SEP-BBB", "-A KUBE-SEP-BBB -p tcp -j DNAT --to-destination 10.244.2.3:8080"
)
FORWARD = RuleHit(
    "filter",
    "FORWARD",
    '-A FORWARD -m comment --comment "kubernetes forwarding rules" -j KUBE-FORWARD',
)
RETURN = RuleHit(
    "nat", "KUBE-POSTROUTING", "-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN"
)
MASQ = RuleHit("nat", "KUBE-POSTROUTING", "-A KUBE-POSTROUTING -j MASQUERADE --random-fully")
RULES = (PORTAL, SERVICES, MARK, PICK, DNAT, FORWARD, RETURN, MASQ)


def _ev(masquerade: bool) -> RewriteEvidence:
    return RewriteEvidence(
        direction="forward",
        hop=1,
        node="node1",
        kind="DNAT",
        before=BEFORE,
        after=AFTER,
        mode="iptables",
        rules_source="nodes/node1/iptables-save.txt",
        verdict="DNAT",
        service="default/web:http",
        rules=RULES,
        endpoints=(
            EndpointChoice("10.244.1.3:8080", 0.5, masquerade),
            EndpointChoice("10.244.2.3:8080", 0.5, masquerade),
        ),
        chosen="10.244.2.3:8080",
        chosen_probability=0.5,
        masquerade=masquerade,
        masqueraded=masquerade,
    )


def test_without_masquerade_only_the_service_choice_and_dnat_decide() -> None:
    ev = _ev(False)
    assert [r for r in RULES if decisive(ev, r)] == [SERVICES, PICK, DNAT]


def test_with_masquerade_the_mark_and_the_masquerade_rule_decide_too() -> None:
    ev = _ev(True)
    assert [r for r in RULES if decisive(ev, r)] == [SERVICES, MARK, PICK, DNAT, MASQ]


def _path() -> Path:
    hops = (
        Hop("client", "client", None, "eth0", None, 0, BEFORE),
        Hop("node1", "node", "node1", "cni0", "in", 10, AFTER),
    )
    return Path(Request(0, "tcp", "a", "b", None, "", 0), hops, (), Latency(None, None, None))


def test_the_section_names_the_chosen_endpoint_with_its_probability() -> None:
    text = render_evidence_compact(_path(), PathEvidence((_ev(False),)))
    assert "forward hop 2 (node1 cni0) on node1: DNAT 10.96.0.100:80 → 10.244.2.3:8080" in text
    assert (
        "endpoint 10.244.2.3:8080 chosen with probability 1/2 (of 2; also 10.244.1.3:8080)" in text
    )
    assert "masquerade: rules no, packets no (they agree)" in text
    assert "KUBE-FORWARD" not in text and "PREROUTING" not in text


def test_the_full_walk_shows_every_rule_and_the_json_the_choice() -> None:
    ev = PathEvidence((_ev(False),))
    text = render_evidence(_path(), ev)
    assert text.startswith("Rule evidence\n")
    assert all(f"[{r.table} {r.chain}] {r.rule}" in text for r in RULES)
    assert re.search(r"endpoint 10\.244\.2\.3:8080 +probability 1/2  ← chosen", text)
    assert "masquerade: rules no, packets no\n" in text
    (js,) = evidence_json(ev)
    assert js["hop"] == 1 and js["chosen"] == "10.244.2.3:8080"
    assert js["before"] == {"proto": "tcp", "src": "10.244.1.2:5000", "dst": "10.96.0.100:80"}
    assert js["rules"] == [r.to_json() for r in RULES]


def test_a_path_finding_told_under_its_rewrite_is_told_once_in_the_compact_view() -> None:
    stop = Finding("rejected", "node1 rejects the packet")
    ev = PathEvidence((replace(_ev(False), findings=(stop,)),), (stop,))
    assert render_evidence_compact(_path(), ev).count("FINDING (rejected)") == 1
    assert render_evidence(_path(), ev).count("FINDING (rejected)") == 2
    assert evidence_json(ev)[-1] == {
        "direction": None,
        "hop": None,
        "finding": {"kind": "rejected", "message": "node1 rejects the packet"},
    }

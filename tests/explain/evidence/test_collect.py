"""Rule evidence against the lab's truth: the DNAT node, the endpoint, conntrack, the findings."""

from __future__ import annotations

from typing import Any

import pytest

from tests.explain.evidence.node_a import CONNTRACK, LINKS, RULES
from tests.explain.runs import SCENARIOS, story_input, truth
from tracer.explain.evidence import PathEvidence, RewriteEvidence, collect_evidence
from tracer.explain.facts import NodeFacts, addresses_from_links, node_facts_from_text
from tracer.model import Endpoint, Hop, Latency, Path, Request, Translation, Tuple5

DNAT_RUNS = [
    s for s in SCENARIOS if any(t["kind"] == "DNAT" for t in truth(s)["expected_translations"])
]


def _leg_to(scenario: str, backend: str, sport: str | None = None) -> PathEvidence:
    """The evidence of the leg whose forward path was DNATed to `backend` (from `sport`)."""
    for leg in story_input(scenario).legs:
        for ev in leg.evidence.rewrites:
            if ev.chosen == backend and (sport is None or str(ev.before.src.port) == sport):
                return leg.evidence
    raise AssertionError(f"{scenario}: no leg DNATed to {backend}")


def _lab_dnat(
    scenario: str,
) -> tuple[dict[str, Any], dict[str, Any], PathEvidence, RewriteEvidence]:
    """The lab's truth for a run, the DNAT it configured, the evidence of the leg so DNATed and
    that rewrite's own."""
    t = truth(scenario)
    want = next(x for x in t["expected_translations"] if x["kind"] == "DNAT")
    ev = _leg_to(scenario, want["to"], t["conntrack"]["original"]["sport"])
    return t, want, ev, next(r for r in ev.rewrites if r.chosen == want["to"])


@pytest.mark.parametrize("scenario", DNAT_RUNS)
def test_dnat_is_explained_by_the_node_and_endpoint_the_lab_configured(scenario: str) -> None:
    t, want, ev, dnat = _lab_dnat(scenario)
    assert dnat.node == want["node"]
    assert str(dnat.before.dst) == want["from"] or t["scenario"] == "ingress-hostnet"
    assert dnat.verdict == "DNAT"
    assert want["to"] in [e.address for e in dnat.endpoints]
    assert dnat.chosen_probability == pytest.approx(1.0)  # every lab Service has one endpoint
    assert dnat.conntrack is not None
    assert dnat.conntrack.text.split() == t["conntrack"]["line"].split()
    assert str(dnat.conntrack.reply.src) == t["conntrack"]["dnat_to"]
    assert not [f for f in ev.all_findings if f.kind != "dropped"]


@pytest.mark.parametrize("scenario", DNAT_RUNS)
def test_masquerade_decision_matches_the_lab(scenario: str) -> None:
    t, _, _, dnat = _lab_dnat(scenario)
    assert dnat.masquerade is (t["snat_node"] is not None)
    if t["snat_node"]:
        assert dnat.after is not None
        assert str(dnat.after.src) == t["conntrack"]["snat_to"]


def test_reply_un_dnat_is_confirmed_by_the_same_conntrack_entry() -> None:
    ev = _leg_to("clusterip", "10.244.1.3:8080")
    rev = [r for r in ev.rewrites if r.direction == "reverse"]
    assert [r.kind for r in rev] == ["un-DNAT"]
    assert rev[0].conntrack is not None
    assert str(rev[0].conntrack.original.dst) == "10.96.0.100:80"
    assert rev[0].after is not None and str(rev[0].after.src) == "10.96.0.100:80"


def test_hostnetwork_client_rewrite_is_found_through_conntrack() -> None:
    # nginx on node1's own address: nat OUTPUT rewrites before any capture sees the packet.
    ev = _leg_to("ingress-hostnet", "10.244.2.3:8080")
    hidden = ev.rewrites[0]
    assert hidden.entry == "local"
    assert str(hidden.before.dst) == "10.96.0.101:80"
    assert hidden.kind == "DNAT+SNAT"


@pytest.mark.parametrize(
    ("scenario", "kind", "words"),
    [
        ("no-endpoints", "rejected", "kube-proxy has no endpoints for default/web-empty"),
        ("local-no-endpoint", "dropped", "default/web-local:http has no local endpoints on node1"),
        ("drop", "dropped", "-A FORWARD -s 10.244.1.2/32 -d 10.244.2.3/32"),
    ],
)
def test_the_rule_that_stops_a_packet_is_named(scenario: str, kind: str, words: str) -> None:
    findings = [f for leg in story_input(scenario).legs for f in leg.evidence.all_findings]
    assert any(f.kind == kind and words in f.message for f in findings), findings


# --- constructed paths against a small ruleset -------------------------------------------------

CLIENT = Endpoint("10.244.1.7", 53700)
PRE = Tuple5("tcp", CLIENT, Endpoint("10.96.0.100", 80))


def _path(backend: str, src: Endpoint = CLIENT) -> Path:
    ip, port = backend.split(":")
    post = Tuple5("tcp", src, Endpoint(ip, int(port)))
    tr = Translation("DNAT" if src == CLIENT else "DNAT+SNAT", PRE, post)
    fwd = (
        Hop("client", "client", "node-a", "eth0", "out", 0, PRE, frame=0),
        Hop("node-a", "node", "node-a", "eth0", "out", 50_000, post, translation=tr, frame=4),
        Hop("server", "server", "node-b", "eth0", "in", 90_000, post, frame=0),
    )
    req = Request(0, "tcp", str(CLIENT), "10.96.0.100:80", backend, "", 0)
    return Path(req, fwd, (), Latency(None, None, None))


def _facts() -> dict[str, NodeFacts]:
    texts = {"iptables-save.txt": RULES, "conntrack.txt": CONNTRACK, "links.json": LINKS}
    return {"node-a": node_facts_from_text("node-a", texts)}


def test_links_addresses_are_the_nodes_own() -> None:
    assert addresses_from_links(LINKS) == ("192.168.56.11",)
    assert addresses_from_links("not json") == ()


def test_two_endpoints_each_have_half_the_probability() -> None:
    ev = collect_evidence(_path("10.244.2.9:8080"), _facts())
    dnat = ev.get("forward", 1)
    assert dnat is not None
    assert {e.address: round(e.probability, 6) for e in dnat.endpoints} == {
        "10.244.2.9:8080": 0.5,
        "10.244.2.10:8080": 0.5,
    }
    assert dnat.chosen_probability == pytest.approx(0.5)
    assert dnat.masquerade is False and dnat.masqueraded is False
    assert dnat.conntrack is not None and str(dnat.conntrack.reply.src) == "10.244.2.9:8080"
    assert dnat.findings == ()
    assert dnat.hop == 1 and any("KUBE-SEP-A" in r.rule for r in dnat.rules)


def test_dnat_to_an_endpoint_no_rule_names_is_a_finding() -> None:
    ev = collect_evidence(_path("10.244.3.3:8080"), _facts())
    kinds = {f.kind for f in ev.all_findings}
    assert "unexplained-endpoint" in kinds
    assert "conntrack-mismatch" in kinds  # conntrack says replies come from 10.244.2.9


def test_masquerade_the_rules_do_not_make_is_a_finding() -> None:
    masq = Endpoint("10.244.1.0", 40000)
    ev = collect_evidence(_path("10.244.2.9:8080", src=masq), _facts())
    assert "masquerade-mismatch" in {f.kind for f in ev.all_findings}


def test_without_rules_there_is_no_walk_and_no_false_finding() -> None:
    ev = collect_evidence(_path("10.244.2.9:8080"), {})
    assert ev.rewrites[0].verdict is None
    assert ev.all_findings == ()

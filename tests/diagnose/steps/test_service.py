"""Step 4 on hand-made facts: what the packets show at the Service against node-a's saved rules
(iptables-save as kube-proxy writes it: two endpoints, half the time each) and the manifest's
endpoints."""

from __future__ import annotations

from tests.explain.evidence.node_a import LINKS, RULES
from tracer.diagnose.model import RunFacts
from tracer.diagnose.steps.service import step_service
from tracer.explain.facts import node_facts_from_text
from tracer.model import CapturePoint, Connection, Endpoint, Journey, Observation, Tuple5
from tracer.rundir import Manifest, Service, ServiceEndpoint, ServicePort

CLIENT = Endpoint("10.244.1.7", 53700)
CLUSTER_IP = Endpoint("10.96.0.100", 80)
WEB = Service(
    "default",
    "web",
    ("10.96.0.100",),
    (ServicePort(80, target_port=8080),),
    (ServiceEndpoint("10.244.2.9", "default/web-a", "node-b"),),
)


def _facts(dst: Endpoint, backend: Endpoint | None, answered: bool) -> RunFacts:
    """One request from the client through node-a: to `dst`, DNATed there to `backend` (None:
    untranslated), answered or not."""
    sent = Tuple5("tcp", CLIENT, dst)
    at_node = Tuple5("tcp", CLIENT, backend) if backend is not None else sent
    syn = Journey(
        "syn",
        "forward",
        (
            Observation("client", 0, 0, sent, "eth0", "out"),
            Observation("node-a", 3, 40_000, at_node, "eth0", "out"),
        ),
    )
    journeys = (syn,)
    if answered:
        reply = Tuple5("tcp", at_node.dst, CLIENT)
        journeys += (Journey("syn-ack", "reverse", (Observation("node-a", 4, 90_000, reply),)),)
    tuples = (("client", sent), ("node-a", at_node))
    conn = Connection(1, "tcp", sent, ("client", "node-a"), tuples, journeys, 0, backend)
    manifest = Manifest(
        source="lab",
        created="",
        points=(
            CapturePoint("client", "client", "points/client.pcap", node="node-a"),
            CapturePoint("node-a", "node", "points/node-a.pcap", node="node-a"),
        ),
        services=(WEB,),
    )
    node = node_facts_from_text("node-a", {"iptables-save.txt": RULES, "links.json": LINKS})
    return RunFacts(
        run="RUN", manifest=manifest, connections=(conn,), main=1, nodes={"node-a": node}
    )


def test_a_dnat_to_an_endpoint_the_rules_do_not_name_is_a_warning() -> None:
    info, warning = step_service(_facts(CLUSTER_IP, Endpoint("10.244.3.3", 8080), True))
    assert (info.severity, info.title) == (
        "info",
        "DNAT of default/web at node-a: 10.96.0.100:80 -> 10.244.3.3:8080",
    )
    assert warning.severity == "warning"
    assert warning.title == (
        "node-a's saved rules DNAT 10.96.0.100:80 to 10.244.2.10:8080, 10.244.2.9:8080, "
        "but the packet went to 10.244.3.3:8080"
    )
    assert any("-j DNAT --to-destination" in line for line in warning.evidence)


def test_a_dnat_the_rules_name_agrees() -> None:
    info, agree = step_service(_facts(CLUSTER_IP, Endpoint("10.244.2.9", 8080), True))
    assert info.title.endswith("-> 10.244.2.9:8080 (pod default/web-a)")
    assert agree.severity == "info" and agree.title.startswith("node-a's saved rules agree")


def test_an_unanswered_dnat_to_an_address_no_endpoint_has_is_a_stale_endpoint() -> None:
    (stale,) = step_service(_facts(CLUSTER_IP, Endpoint("10.244.3.3", 8080), False))
    assert stale.severity == "error" and stale.title.startswith(
        "Stale endpoint: kube-proxy on node-a DNATs default/web to 10.244.3.3:8080"
    )
    assert "10.244.3.3 is not among the Service's endpoints" in stale.evidence


def test_an_unanswered_request_that_reached_the_node_untranslated_names_the_node() -> None:
    (found,) = step_service(_facts(CLUSTER_IP, None, False))
    assert found.severity == "warning"
    assert found.title == "No DNAT seen for default/web: 10.96.0.100:80 reached node-a untranslated"
    assert "node-a's saved rules: verdict DNAT" in found.evidence[-1]


def test_a_destination_that_is_no_service_expects_no_translation() -> None:
    (found,) = step_service(_facts(Endpoint("10.0.0.5", 80), None, True))
    assert found.severity == "info"
    assert found.title.startswith("10.0.0.5:80 is not a Service in the run's manifest")

"""Step 3 on hand-made DNS packets: the search list folded into one lookup, failures, retries."""

from __future__ import annotations

from collections.abc import Mapping

from tests.diagnose.steps.facts import run_facts
from tracer.diagnose.model import RunFacts
from tracer.diagnose.steps.dns import step_dns
from tracer.dnslookup import DnsPacket, lookups
from tracer.model import Connection, Endpoint, Tuple5
from tracer.protocols.dns import DnsMessage


def test_dns_without_queries_mentions_the_wanted_name() -> None:
    f = run_facts(request={"command": ["curl", "http://web.example.com/x"]})
    (finding,) = step_dns(f)
    assert finding.severity == "info" and "'web.example.com'" in finding.evidence[0]


# --- step 3 on hand-made DNS packets: (frame, ms, query?, name, qtype, rcode, addresses) -----------

_CLIENT = Endpoint("10.244.1.2", 40000)
_KUBE_DNS = Endpoint("10.96.0.10", 53)
_MS = 1_000_000
_CURL_WEB: dict[str, object] = {"command": ["curl", "http://web/"]}


def _dns_facts(
    packets: list[tuple[int, float, bool, str, int, int, tuple[str, ...]]],
    request: Mapping[str, object] | None = None,
) -> RunFacts:
    t = Tuple5("udp", _CLIENT, _KUBE_DNS)
    c = Connection(0, "udp", t, ("client",), (("client", t),), (), 0, Endpoint("10.244.1.4", 53))
    pkts = [
        DnsPacket(
            0,
            "client",
            is_query,
            int(ms * _MS),
            DnsMessage(not is_query, rcode, name, qtype, tuple((qtype, a) for a in addrs), qtype),
            frame,
        )
        for frame, ms, is_query, name, qtype, rcode, addrs in packets
    ]
    return run_facts(request=dict(request or {}), lookups=tuple(lookups([c], pkts)))


def test_dns_nxdomain_evidence_says_it_once() -> None:
    f = _dns_facts(
        [
            (0, 0.0, True, "wbe.default.svc.cluster.local", 1, 0, ()),
            (2, 0.867, False, "wbe.default.svc.cluster.local", 1, 3, ()),
            (3, 1.0, True, "wbe", 1, 0, ()),
            (4, 2.5, False, "wbe", 1, 3, ()),
        ],
        {"command": ["curl", "http://wbe/"]},
    )
    (finding,) = step_dns(f)
    assert finding.severity == "error" and "'wbe' does not exist" in finding.title
    assert "NXDOMAIN for all 2 names tried (1 search-domain expansions" in finding.title
    assert finding.evidence == (
        "client frame 1: A wbe.default.svc.cluster.local -> NXDOMAIN (client frame 3, 0.867 ms)",
        "client frame 4: A wbe -> NXDOMAIN (client frame 5, 1.500 ms)",
    )


def test_dns_nxdomain_for_a_name_the_request_did_not_use_is_a_warning() -> None:
    f = _dns_facts(
        [
            (0, 0.0, True, "metrics", 1, 0, ()),
            (1, 1.0, False, "metrics", 1, 3, ()),
        ],
        _CURL_WEB,
    )
    (finding,) = step_dns(f)
    assert finding.severity == "warning" and "'metrics' does not exist" in finding.title


def test_dns_answer_time_is_first_query_to_the_answer_that_resolved() -> None:
    f = _dns_facts(
        [
            (0, 0.0, True, "web.default.svc.cluster.local", 1, 0, ()),
            (1, 0.143, True, "web.default.svc.cluster.local", 28, 0, ()),
            (2, 0.972, False, "web.default.svc.cluster.local", 1, 0, ("10.96.0.100",)),
            (3, 1.25, False, "web.default.svc.cluster.local", 28, 0, ()),
        ],
        _CURL_WEB,
    )
    (finding,) = step_dns(f)
    assert finding.severity == "info"
    assert finding.title == (
        "DNS: web -> 10.96.0.100 in 0.972 ms (2 queries, 2 of them search-list expansions)"
    )
    assert finding.evidence[1] == (
        "client frame 2: AAAA web.default.svc.cluster.local -> NOERROR (no records) "
        "(client frame 4, 1.107 ms)"
    )


def test_dns_retry_and_slow_answer_are_warnings() -> None:
    name = "web.default.svc.cluster.local"
    f = _dns_facts(
        [
            (0, 0.0, True, name, 1, 0, ()),
            (1, 5000.0, True, name, 1, 0, ()),  # the resolver's retry after its 5 s timeout
            (2, 5001.5, False, name, 1, 0, ("10.96.0.100",)),
        ],
        _CURL_WEB,
    )
    found = {x.title: x for x in step_dns(f)}
    retry = found[f"DNS: retries for 'web': {name} A sent 2 times"]
    assert retry.severity == "warning"
    assert retry.evidence == (
        f"client frame 1: A {name} -> NOERROR 10.96.0.100 (client frame 3, 5001.500 ms, "
        "sent 2 times)",
    )
    slow = next(x for t, x in found.items() if t.startswith("DNS is slow"))
    assert slow.severity == "warning" and "in 5001.500 ms" in slow.title


def test_dns_without_any_answer_is_a_timeout_error() -> None:
    f = _dns_facts([(0, 0.0, True, "web.default.svc.cluster.local", 1, 0, ())], _CURL_WEB)
    (finding,) = step_dns(f)
    assert finding.severity == "error" and "got no answer (timeout)" in finding.title
    assert finding.evidence == (
        "client frame 1: A web.default.svc.cluster.local (udp 10.244.1.2:40000 > 10.96.0.10:53)",
    )

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from tracer.dnslookup import (
    DnsLookup,
    DnsPacket,
    find_lookup,
    lookups,
    pair_queries,
    read_dns_packets,
    run_names,
    search_domains,
)
from tracer.model import Connection, Endpoint, Tuple5
from tracer.pcap.payload import PayloadReader
from tracer.protocols.dns import DnsMessage

PCAPS = Path(__file__).resolve().parent.parent / "pcaps"
CLIENT = Endpoint("10.244.1.2", 40000)
KUBE_DNS = Endpoint("10.96.0.10", 53)
COREDNS = Endpoint("10.244.1.4", 53)
MS = 1_000_000


def conn(index: int, start_ns: int, dst: Endpoint = KUBE_DNS, **kw: object) -> Connection:
    proto = str(kw.pop("proto", "udp"))
    src = kw.pop("src", CLIENT)
    assert isinstance(src, Endpoint)
    backend = kw.pop("backend", COREDNS if dst == KUBE_DNS else None)
    assert backend is None or isinstance(backend, Endpoint)
    t = Tuple5(proto, src, dst)
    return Connection(index, proto, t, ("client",), (("client", t),), (), start_ns, backend)


def query(c: int, t_ns: int, name: str, qtype: int = 1, ident: int = 7) -> DnsPacket:
    return DnsPacket(c, "client", True, t_ns, DnsMessage(False, 0, name, qtype, (), ident))


def answer(
    c: int, t_ns: int, name: str, qtype: int = 1, ident: int = 7, rcode: int = 0, *addrs: str
) -> DnsPacket:
    answers = tuple((qtype, a) for a in addrs)
    return DnsPacket(c, "client", False, t_ns, DnsMessage(True, rcode, name, qtype, answers, ident))


# --- pairing questions and answers -----------------------------------------------------------


def test_answers_pair_by_id_and_question_and_a_retry_counts_once() -> None:
    c = conn(0, 0)
    packets = [
        query(0, 0, "web.default.svc.cluster.local", 1, ident=1),
        query(0, 100, "web.default.svc.cluster.local", 28, ident=2),
        # The AAAA answer comes first; it must not be taken for the A question.
        answer(0, 900, "web.default.svc.cluster.local", 28, 2, 0),
        query(0, 5 * MS, "web.default.svc.cluster.local", 1, ident=1),  # resolver retry
        answer(0, 5 * MS + 300, "web.default.svc.cluster.local", 1, 1, 0, "10.96.0.100"),
    ]
    qs = pair_queries(c, packets, {"10.244.1.4": "kube-system/coredns"})
    assert [(q.qtype, q.rcode, q.answers, q.latency_ns) for q in qs] == [
        ("A", "NOERROR", ("10.96.0.100",), 5 * MS + 300),  # what the application waited
        ("AAAA", "NOERROR", (), 800),
    ]
    assert qs[0].asked == KUBE_DNS and qs[0].server == COREDNS
    assert qs[0].server_name == "kube-system/coredns"


def test_frames_and_retries_are_kept_for_the_evidence() -> None:
    name = "web.default.svc.cluster.local"
    packets = [
        replace(query(0, 0, name, 1, ident=1), frame=0),
        replace(query(0, 5 * MS, name, 1, ident=1), frame=3),  # resolver retry
        replace(answer(0, 5 * MS + 300, name, 1, 1, 0, "10.96.0.100"), frame=4),
    ]
    (q,) = pair_queries(conn(0, 0), packets)
    assert (q.frame, q.answer_frame, q.sends) == (0, 4, 2)


def test_lookups_group_each_clients_queries_by_name_and_time() -> None:
    other_client = Endpoint("10.244.1.9", 40001)
    conns = [conn(0, 0), conn(1, MS, src=other_client), conn(2, 2 * MS), conn(3, 60 * 10**9)]
    packets = [
        query(0, 0, "web.default.svc.cluster.local"),
        answer(0, MS, "web.default.svc.cluster.local", 1, 7, 0, "10.96.0.100"),
        query(1, MS, "web.default.svc.cluster.local"),
        query(2, 2 * MS, "metrics.default.svc.cluster.local"),
        answer(2, 3 * MS, "metrics.default.svc.cluster.local", 1, 7, 3),
        query(3, 60 * 10**9, "web.default.svc.cluster.local"),  # a minute later: another lookup
    ]
    found = lookups(conns, packets)
    assert [(lk.name, [q.connection for q in lk.queries]) for lk in found] == [
        ("web", [0]),
        ("web", [1]),
        ("metrics", [2]),
        ("web", [3]),
    ]
    assert found[0].address == "10.96.0.100" and found[0].elapsed_ns == MS
    assert found[1].address is None and found[1].queries[0].rcode is None
    assert found[2].address is None and found[2].queries[0].rcode == "NXDOMAIN"


def test_a_query_without_reply_has_no_rcode_nor_latency() -> None:
    (q,) = pair_queries(conn(0, 0), [query(0, 0, "web")])
    assert q.rcode is None and q.latency_ns is None and q.answers == ()


# --- which queries make the lookup ----------------------------------------------------------


def _nxdomain_then_answer(ns: str, domain: str, stem: str, addr: str) -> list[DnsPacket]:
    """A pod's resolver with ndots:5: every search domain, A and AAAA, until one answers."""
    search = [f"{ns}.svc.{domain}", f"svc.{domain}", domain]
    packets: list[DnsPacket] = []
    t = 0
    for i, s in enumerate(search[:-1]):
        name = f"{stem}.{s}"
        for qtype in (1, 28):
            ident = 100 + 2 * i + (qtype == 28)
            packets.append(query(i, t, name, qtype, ident))
            rcode = 0 if i == 1 else 3
            addrs = (addr,) if (i == 1 and qtype == 1) else ()
            packets.append(answer(i, t + MS, name, qtype, ident, rcode, *addrs))
            t += 2 * MS
    return packets


@given(
    stem=st.from_regex(r"[a-z][a-z0-9-]{0,12}", fullmatch=True),
    ns=st.from_regex(r"[a-z][a-z0-9-]{0,10}", fullmatch=True),
    domain=st.sampled_from(["cluster.local", "k8s.example.org", "c"]),
)
def test_search_expansions_are_counted_and_the_typed_name_recovered(
    stem: str, ns: str, domain: str
) -> None:
    packets = _nxdomain_then_answer(ns, domain, stem, "10.96.0.100")
    dns_conns = [conn(0, 0), conn(1, 4 * MS)]
    request = conn(9, 20 * MS, Endpoint("10.96.0.100", 80), proto="tcp")
    lookup = find_lookup(request, [*dns_conns, request], packets)
    assert lookup is not None
    assert lookup.name == stem
    assert lookup.search == (f"{ns}.svc.{domain}", f"svc.{domain}", domain)
    assert len(lookup.queries) == 4 and lookup.expansions == 4
    assert lookup.address == "10.96.0.100"
    assert lookup.answered_by is not None
    assert lookup.answered_by.name == f"{stem}.svc.{domain}" and lookup.answered_by.qtype == "A"
    assert lookup.elapsed_ns == 5 * MS  # first query out at 0, the A answer in at 5 ms


def test_lookups_of_other_clients_other_names_and_later_ones_are_left_out() -> None:
    other_client = Endpoint("10.244.1.9", 40001)
    conns = [
        conn(0, 0),  # ours: web -> 10.96.0.100
        conn(1, 1 * MS, src=other_client),  # someone else asking the same
        conn(2, 2 * MS),  # ours, another name
        conn(4, 50 * MS),  # ours, after the request
    ]
    request = conn(3, 10 * MS, Endpoint("10.96.0.100", 80), proto="tcp")
    packets = [
        query(0, 0, "web.default.svc.cluster.local"),
        answer(0, MS, "web.default.svc.cluster.local", 1, 7, 0, "10.96.0.100"),
        query(1, MS, "web.default.svc.cluster.local"),
        answer(1, 2 * MS, "web.default.svc.cluster.local", 1, 7, 0, "10.96.0.100"),
        query(2, 2 * MS, "metrics.default.svc.cluster.local"),
        answer(2, 3 * MS, "metrics.default.svc.cluster.local", 1, 7, 0, "10.96.0.7"),
        query(4, 50 * MS, "web.default.svc.cluster.local"),
        answer(4, 51 * MS, "web.default.svc.cluster.local", 1, 7, 0, "10.96.0.100"),
    ]
    lookup = find_lookup(request, [*conns, request], packets)
    assert lookup is not None
    assert [(q.connection, q.name) for q in lookup.queries] == [
        (0, "web.default.svc.cluster.local")
    ]


def test_no_lookup_when_no_answer_holds_the_destination() -> None:
    request = conn(1, 10 * MS, Endpoint("10.96.0.200", 80), proto="tcp")
    packets = [
        query(0, 0, "web.default.svc.cluster.local"),
        answer(0, MS, "web.default.svc.cluster.local", 1, 7, 0, "10.96.0.100"),
    ]
    assert find_lookup(request, [conn(0, 0), request], packets) is None


def test_name_without_pod_search_list_is_not_an_expansion() -> None:
    assert search_domains(["web.example.com"]) == ()
    request = conn(1, 10 * MS, Endpoint("192.168.50.11", 30090), proto="tcp")
    packets = [
        query(0, 0, "web.example.com"),
        answer(0, MS, "web.example.com", 1, 7, 0, "192.168.50.11"),
    ]
    lookup = find_lookup(request, [conn(0, 0, Endpoint("192.168.50.1", 53)), request], packets)
    assert lookup is not None and lookup.name == "web.example.com" and lookup.expansions == 0
    assert lookup.queries[0].server == Endpoint("192.168.50.1", 53)  # no DNAT: who was asked


# --- the lab's recorded runs (ground truth: pcaps/README.md and each manifest) -----------------


def _lookup_of(run: str, dns_request: bool = False) -> tuple[DnsLookup | None, dict[str, Any]]:
    from tracer.correlate import correlate
    from tracer.inputs import load_run

    loaded = load_run(PCAPS / run)
    corr = correlate(loaded.points)
    conns = corr.connections
    if dns_request:
        request = conns[0]
    else:
        request = next(c for c in conns if c.protocol == "tcp")
    with PayloadReader() as reader:
        packets = read_dns_packets(conns, loaded.frames, reader)
    assert loaded.manifest is not None
    names = run_names(loaded.manifest.services)
    doc: dict[str, Any] = json.loads((PCAPS / run / "manifest.json").read_text())
    return find_lookup(request, conns, packets, names), doc


def test_clusterip_remote_lookup_matches_the_lab() -> None:
    lookup, manifest = _lookup_of("clusterip-remote")
    lab = manifest["extra"]["lab"]
    frontend_ip = lab["frontend"].rsplit(":", 1)[0]
    (svc,) = [s for s in manifest["services"] if s["name"] == "kube-dns"]
    (endpoint,) = svc["endpoints"]
    assert lookup is not None
    assert lookup.address == frontend_ip
    assert lookup.name == "web-remote"
    assert lookup.expansions >= 1
    used = lookup.answered_by
    assert used is not None
    assert used.name == "web-remote.default.svc.cluster.local" and used.qtype == "A"
    assert str(used.asked) == f"{svc['cluster_ips'][0]}:53"
    assert used.server.ip == endpoint["address"] and used.server_name == endpoint["pod"]
    assert used.latency_ns is not None and 0 < used.latency_ns < 1_000_000_000


def test_nxdomain_run_shows_all_eight_answers() -> None:
    lookup, _ = _lookup_of("dns-nxdomain", dns_request=True)
    assert lookup is not None
    qs = lookup.queries
    assert len(qs) == 8 and {q.rcode for q in qs} == {"NXDOMAIN"}
    assert sorted({q.qtype for q in qs}) == ["A", "AAAA"]
    assert lookup.name == "wbe" and lookup.expansions == 6
    assert lookup.address is None

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from tests.report import golden, sample
from tests.report.shape import check_path_document
from tests.report.test_table import dns_lookup
from tracer.report.json import path_json, render_json


@pytest.mark.parametrize("name", ["path_clusterip.json", "path_nodeport.json", "list.json"])
def test_matches_golden(name: str) -> None:
    golden.check(name)


@pytest.mark.parametrize(
    "path", [sample.clusterip_path(), sample.nodeport_path(), sample.udp_path_no_reply()]
)
def test_document_keeps_the_contract(path: object) -> None:
    doc = json.loads(render_json(path))  # type: ignore[arg-type]
    check_path_document(doc)


def test_contract_names_and_values() -> None:
    doc = path_json(sample.clusterip_path())
    # The first seven keys are the original contract; later keys are only ever appended.
    assert list(doc) == [
        "schema",
        "request",
        "forward",
        "reverse",
        "latency",
        "clocks",
        "warnings",
        "dns",
        "evidence",
        "notes",
        "stitches",
    ]
    assert doc["stitches"] == [] and doc["latency"]["proxy_ns"] is None
    assert {h["kind"] for h in doc["forward"] + doc["reverse"]} == {"packet"}
    assert doc["request"] == {
        "index": 0,
        "protocol": "tcp",
        "client": "10.244.1.7:53700",
        "destination": "10.96.0.100:80",
        "backend": "10.244.2.9:8080",
        "summary": "HTTP GET /hello -> 200",
        "start_ns": sample.START_NS,
    }
    dnat_hop = doc["forward"][2]
    assert dnat_hop["t_ns"] == 58_000
    assert dnat_hop["ttl"] == 63
    assert dnat_hop["translation"] == {
        "kind": "DNAT",
        "before": {"src": "10.244.1.7:53700", "dst": "10.96.0.100:80"},
        "after": {"src": "10.244.1.7:53700", "dst": "10.244.2.9:8080"},
    }
    assert doc["reverse"][3]["translation"]["kind"] == "un-DNAT"
    assert doc["latency"]["segments"][1] == {
        "from": "node-a",
        "to": "node-b",
        "first_ns": 154_000,
        "median_ns": 150_500,
        "packets": 7,
        "negative": False,
    }
    assert doc["clocks"][0]["offset_ns"] == 1_250_000
    assert doc["clocks"][0]["error_bound_ns"] == 12_000


def test_unknown_latency_is_null_not_zero() -> None:
    doc = json.loads(render_json(sample.nodeport_path()))
    assert doc["latency"]["total_ns"] is None
    assert doc["latency"]["connect_ns"] is None
    assert doc["latency"]["segments"][0]["negative"] is True


def test_dns_key_lists_each_query_with_the_documented_fields() -> None:
    lookup = dns_lookup()
    doc = json.loads(render_json(sample.clusterip_path(), dns=lookup))
    check_path_document(doc)
    first, second = doc["dns"]
    assert {k: first[k] for k in ("name", "qtype", "rcode", "answers", "latency_ns", "server")} == {
        "name": "web.default.svc.cluster.local",
        "qtype": "A",
        "rcode": "NOERROR",
        "answers": ["10.96.0.100"],
        "latency_ns": 1_250_000,
        "server": "10.244.2.5:53",
    }
    assert first["asked"] == "10.96.0.10:53" and first["server_name"].startswith("kube-system/")
    assert first["used"] is True and second["used"] is False
    assert first["search_expansion"] is True
    assert first["start_ns"] == sample.START_NS - 3_000_000
    assert second["qtype"] == "AAAA" and second["answers"] == []


def test_a_query_without_reply_is_null_not_zero() -> None:
    lookup = dns_lookup()
    lost = replace(lookup.queries[1], rcode=None, latency_ns=None)
    doc = path_json(sample.clusterip_path(), dns=replace(lookup, queries=(lookup.queries[0], lost)))
    assert doc["dns"][1]["rcode"] is None and doc["dns"][1]["latency_ns"] is None


def test_evidence_is_null_without_node_facts_and_passed_through_with_them() -> None:
    assert path_json(sample.clusterip_path())["evidence"] is None
    ev = [{"direction": "forward", "hop": 2, "kind": "DNAT", "conntrack": None}]
    assert path_json(sample.clusterip_path(), evidence=ev)["evidence"] == ev
    assert path_json(sample.clusterip_path(), evidence=[])["evidence"] == []


def test_capture_notes_stay_apart_from_the_warnings() -> None:
    path = replace(sample.clusterip_path(), notes=("point n: 4 frames were not IP",))
    doc = path_json(path)
    assert doc["warnings"] == ["point server: 2 frames cut by the snaplen"]
    assert doc["notes"] == ["point n: 4 frames were not IP"]


def test_hops_carry_their_note() -> None:
    path = sample.clusterip_path()
    noted = replace(path.forward[0], note="offload super-segment of 2896 bytes")
    doc = path_json(replace(path, forward=(noted, *path.forward[1:])))
    assert doc["forward"][0]["note"] == "offload super-segment of 2896 bytes"
    assert doc["forward"][1]["note"] is None

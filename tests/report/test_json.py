from __future__ import annotations

import json

import pytest

from tests.report import golden, sample
from tests.report.shape import check_path_document
from tracer.report.json import path_json, render_json, render_list_json


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
    assert list(doc) == ["schema", "request", "forward", "reverse", "latency", "clocks", "warnings"]
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


def test_list_document() -> None:
    doc = json.loads(render_list_json(sample.connections(), sample.LIST_SUMMARIES))
    assert [c["index"] for c in doc["connections"]] == [0, 1, 2]
    assert doc["connections"][1]["summary"].startswith("DNS A web.default")
    assert doc["connections"][0]["summary"] == "HTTP GET /hello -> 200"  # the correlator's own
    assert doc["connections"][2]["backend"] is None

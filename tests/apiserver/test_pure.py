"""The stand-in's pure layers: selectors, discovery documents, Tables and the protobuf decoder."""

from __future__ import annotations

import datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tracer.apiserver import discovery, protobuf, spdy, tables
from tracer.apiserver.selectors import (
    SelectorError,
    fields_match,
    labels_match,
    parse_fields,
)


@pytest.mark.parametrize(
    ("selector", "labels", "expected"),
    [
        ("app=web", {"app": "web"}, True),
        ("app==web", {"app": "db"}, False),
        ("app!=web", {}, True),
        ("app in (web, db)", {"app": "db"}, True),
        ("app notin (web,db)", {"app": "db"}, False),
        ("app notin (web)", {}, True),
        ("app", {"app": ""}, True),
        ("!app", {"app": "x"}, False),
        ("tier in (a,b),app=web", {"app": "web", "tier": "b"}, True),
        ("tier in (a,b),app=web", {"app": "web", "tier": "c"}, False),
    ],
)
def test_label_selectors(selector: str, labels: dict[str, str], expected: bool) -> None:
    assert labels_match(selector, labels) is expected


def test_bad_label_selector_is_refused() -> None:
    with pytest.raises(SelectorError):
        labels_match("app in web", {"app": "web"})


def test_field_selectors_on_indexed_fields_only() -> None:
    pod = {"metadata": {"name": "a", "namespace": "default"}, "spec": {"nodeName": "node1"}}
    assert fields_match("pods", parse_fields("pods", "spec.nodeName=node1"), pod)
    assert not fields_match("pods", parse_fields("pods", "spec.nodeName!=node1"), pod)
    assert fields_match("pods", parse_fields("pods", "metadata.name==a,spec.nodeName=node1"), pod)
    with pytest.raises(SelectorError, match="field label not supported: spec.banana"):
        parse_fields("pods", "spec.banana=1")
    # Indexed for pods, not for services.
    with pytest.raises(SelectorError):
        parse_fields("services", "spec.nodeName=node1")


def test_discovery_lists_every_served_resource_once() -> None:
    agg = discovery.aggregated(core=False)
    served = {
        (item["metadata"]["name"], r["resource"])
        for item in agg["items"]
        for v in item["versions"]
        for r in v["resources"]
    }
    core = discovery.aggregated(core=True)["items"][0]["versions"][0]["resources"]
    served |= {("", r["resource"]) for r in core}
    assert served == {(r.group, r.plural) for r in discovery.RESOURCES}
    legacy = discovery.resource_list("", "v1")
    assert legacy is not None
    assert "pods/exec" in {r["name"] for r in legacy["resources"]}
    assert discovery.resource_list("apps", "v1") is None


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        (
            "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,"
            "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,"
            "application/json",
            discovery.AGGREGATED_V2,
        ),
        (
            "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList",
            discovery.AGGREGATED_V2BETA1,
        ),
        ("application/json, */*", None),
        ("", None),
    ],
)
def test_aggregated_discovery_negotiation(accept: str, expected: str | None) -> None:
    assert discovery.aggregated_accepted(accept) == expected


def test_pod_table_has_the_real_columns() -> None:
    now = datetime.datetime(2026, 1, 1, 0, 10, tzinfo=datetime.UTC)
    pod = {
        "metadata": {"name": "web", "namespace": "default", "creationTimestamp": "2026-01-01T00:00:00Z"},
        "spec": {"nodeName": "node1", "containers": [{"name": "c"}]},
        "status": {"phase": "Running", "podIP": "10.244.1.3", "containerStatuses": [{"ready": True}]},
    }  # fmt: skip
    t = tables.table("pods", [pod], "7", now=now)
    names = [c["name"] for c in t["columnDefinitions"]]
    assert names[:5] == ["Name", "Ready", "Status", "Restarts", "Age"]
    assert t["rows"][0]["cells"][:7] == ["web", "1/1", "Running", "0", "10m", "10.244.1.3", "node1"]
    assert t["rows"][0]["object"]["metadata"]["name"] == "web"
    assert tables.wants_table("application/json;as=Table;v=v1;g=meta.k8s.io,application/json")
    assert not tables.wants_table("application/json")


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (5, "5s"),
        (119, "119s"),
        (200, "3m20s"),
        (600, "10m"),
        (3 * 3600 + 60, "3h1m"),
        (50 * 3600, "2d2h"),
    ],
)
def test_human_duration(seconds: int, text: str) -> None:
    assert tables.human_duration(seconds) == text


def _field(number: int, payload: bytes) -> bytes:
    key = bytes([(number << 3) | 2])
    n = len(payload)
    length = b""
    while True:
        b = n & 0x7F
        n >>= 7
        length += bytes([b | (0x80 if n else 0)])
        if not n:
            break
    return key + length + payload


def _ssar(**attrs: str) -> bytes:
    numbers = {"namespace": 1, "verb": 2, "group": 3, "resource": 5, "subresource": 6}
    ra = b"".join(_field(numbers[k], v.encode()) for k, v in attrs.items())
    raw = _field(2, _field(1, ra))
    tm = _field(1, b"authorization.k8s.io/v1") + _field(2, b"SelfSubjectAccessReview")
    return protobuf.MAGIC + _field(1, tm) + _field(2, raw)


def test_protobuf_self_subject_access_review() -> None:
    body = protobuf.decode(_ssar(verb="create", resource="pods", subresource="ephemeralcontainers"))
    assert body["kind"] == "SelfSubjectAccessReview"
    assert body["spec"]["resourceAttributes"] == {
        "verb": "create",
        "resource": "pods",
        "subresource": "ephemeralcontainers",
    }


@given(st.binary(max_size=200))
def test_protobuf_decoder_never_raises_anything_else(data: bytes) -> None:
    for body in (data, protobuf.MAGIC + data):
        try:
            protobuf.decode(body)
        except protobuf.ProtobufError:
            pass


@given(st.binary(max_size=200))
def test_spdy_header_blocks_never_raise_anything_else(data: bytes) -> None:
    try:
        spdy.decode_headers(data)
    except spdy.SpdyError:
        pass


def test_spdy_header_block_round_trip_and_dictionary() -> None:
    headers = {"streamtype": "stdout", "x": ""}
    assert spdy.decode_headers(spdy.encode_headers(headers)) == headers
    # The dictionary SPDY/3 defines starts with "options" and ends with "enq=0.".
    assert spdy.DICTIONARY.startswith(b"\x00\x00\x00\x07options")
    assert spdy.DICTIONARY.endswith(b",*,enq=0.")

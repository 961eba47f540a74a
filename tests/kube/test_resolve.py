"""Target resolution through the real client against the stand-in, and spec parsing."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tracer.apiserver import (
    EndpointSpec,
    IngressSpec,
    PodSpec,
    ServicePortSpec,
    ServiceSpec,
    serve,
)
from tracer.apiserver.fakes import fake_exec_backend, sample_state
from tracer.errors import ClusterError, UsageError
from tracer.kube.client import KubeApi
from tracer.kube.resolve import FromSpec, ToSpec, parse_from, parse_to, request_uses_name, resolve


@pytest.fixture
def api() -> Iterator[KubeApi]:
    base = sample_state()
    state = type(base)(
        nodes=base.nodes,
        pods=(
            *base.pods,
            PodSpec(
                "ingress-nginx",
                "ingress-nginx-controller-1",
                "n1",
                "10.244.1.7",
                labels={"app.kubernetes.io/name": "ingress-nginx"},
            ),
        ),
        services=(
            *base.services,
            # The endpoint controller still lists web-0, a pod that is gone, on node n1.
            ServiceSpec(
                "default",
                "web-stale",
                "10.96.0.21",
                (ServicePortSpec(80, 8080),),
                (EndpointSpec("10.244.1.99", "n1", "web-0"),),
            ),
        ),
        ingresses=(IngressSpec("default", "shop", "shop.local", "web", 80),),
    )
    with serve(state, fake_exec_backend()) as s:
        a = KubeApi(str(s.kubeconfig_path))
        try:
            yield a
        finally:
            a.close()


def test_service_resolves_to_endpoints_pods_and_nodes(api: KubeApi) -> None:
    t, warnings = resolve(api, FromSpec("pod", "client"), ToSpec("svc", "web"))
    assert api.namespace == "default"  # from the kubeconfig context
    assert t.client is not None and (t.client.ip, t.client.node) == ("10.244.1.2", "n1")
    (svc,) = t.services
    assert svc.cluster_ips == ("10.96.0.20",)
    assert [(p.port, p.target_port, p.node_port) for p in svc.ports] == [(80, 8080, 30080)]
    assert [(s.name, s.ip, s.node) for s in t.servers] == [("web-1", "10.244.2.3", "n2")]
    assert [n.name for n in t.nodes] == ["n1", "n2"]
    assert t.dns is None and warnings == []


def test_stale_endpoint_is_a_warning_and_its_node_is_captured(api: KubeApi) -> None:
    t, warnings = resolve(api, FromSpec("pod", "client"), ToSpec("svc", "web-stale"))
    (svc,) = t.services
    assert [(e.address, e.pod, e.node, e.ready) for e in svc.endpoints] == [
        ("10.244.1.99", "web-0", "n1", True)
    ]
    assert list(t.servers) == []
    assert [n.name for n in t.nodes] == ["n1"]
    assert warnings == [
        "endpoint 10.244.1.99 of default/web-stale names pod web-0, which does not exist"
        " (a stale endpoint: packets sent to it go nowhere)"
    ]


def test_url_by_name_adds_cluster_dns(api: KubeApi) -> None:
    t, _ = resolve(
        api, FromSpec("pod", "client"), parse_to("http://web.default.svc.cluster.local/")
    )
    assert t.uses_name
    assert t.dns is not None and t.dns.cluster_ips == ("10.96.0.10",)
    assert [p.name for p in t.dns_pods] == ["coredns-1"]


def test_ingress_resolves_controller_and_backend(api: KubeApi) -> None:
    t, _ = resolve(api, FromSpec("external"), ToSpec("ingress", "shop"))
    assert t.client is None
    assert [p.name for p in t.ingress_pods] == ["ingress-nginx-controller-1"]
    assert [s.name for s in t.services] == ["web"]
    assert t.extra_ips == ("10.0.0.1",)
    assert {n.name for n in t.nodes} == {"n1", "n2"}


def test_missing_objects_and_ports_are_named(api: KubeApi) -> None:
    with pytest.raises(ClusterError, match='get service default/nope: services "nope" not found'):
        resolve(api, FromSpec("pod", "client"), ToSpec("svc", "nope"))
    with pytest.raises(UsageError, match="has no port 81"):
        resolve(api, FromSpec("pod", "client"), ToSpec("svc", "web", 81))


def test_spec_parsing() -> None:
    assert parse_from("pod/client") == FromSpec("pod", "client")
    assert parse_from("external") == FromSpec("external")
    assert parse_to("svc/web:http") == ToSpec("svc", "web", "http")
    assert parse_to("service/web:80") == ToSpec("svc", "web", 80)
    assert parse_to("http://10.96.0.20:8080/x") == ToSpec(
        "url", "10.96.0.20", 8080, None, "10.96.0.20"
    )
    for bad in ("deploy/web", "svc/", "pod/web:80", "ftp://x/"):
        with pytest.raises(UsageError):
            parse_to(bad)
    assert request_uses_name(["curl", "-s", "http://web/"])
    assert not request_uses_name(["curl", "-s", "http://10.96.0.20/"])


@given(st.text(max_size=40))
def test_parse_never_crashes(spec: str) -> None:
    for parse in (parse_from, parse_to):
        try:
            parse(spec)
        except UsageError:
            pass

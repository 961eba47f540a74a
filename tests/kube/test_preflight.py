"""Preflight through the real client: RBAC denials and Pod Security levels pick the fallback."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tracer.apiserver import Server, serve
from tracer.apiserver.fakes import fake_exec_backend, sample_state
from tracer.errors import ClusterError
from tracer.kube.client import KubeApi
from tracer.kube.preflight import preflight


@pytest.fixture
def server() -> Iterator[Server]:
    with serve(sample_state(), fake_exec_backend()) as s:
        yield s


def _check(s: Server) -> object:
    api = KubeApi(str(s.kubeconfig_path))
    try:
        return preflight(
            api,
            pod_namespaces=["default"],
            node_namespace="default",
            want_pods=True,
            want_nodes=True,
        )
    finally:
        api.close()


def test_everything_allowed(server: Server) -> None:
    pf = _check(server)
    assert (pf.pod_capture, pf.node_capture, pf.warnings) == (True, True, ())  # type: ignore[attr-defined]


def test_denied_ephemeral_patch_falls_back_to_nodes(server: Server) -> None:
    server.denials.deny("patch", "pods/ephemeralcontainers")
    pf = _check(server)
    assert (pf.pod_capture, pf.node_capture) == (False, True)  # type: ignore[attr-defined]
    (w,) = pf.warnings  # type: ignore[attr-defined]
    assert "patch pods/ephemeralcontainers in namespace default" in w
    assert "node captures only" in w


def test_restricted_namespace_refuses_node_pods(server: Server) -> None:
    server.set_namespace_labels("default", {"pod-security.kubernetes.io/enforce": "restricted"})
    with pytest.raises(ClusterError, match="nothing can be captured") as e:
        _check(server)
    assert 'enforces Pod Security "restricted"' in e.value.message


def test_missing_read_permission_is_fatal_and_named(server: Server) -> None:
    server.denials.deny("list", "endpointslices")
    with pytest.raises(
        ClusterError,
        match=r"missing permission: list endpointslices.discovery.k8s.io in namespace default",
    ):
        _check(server)

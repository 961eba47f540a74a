"""Health facts through the real kubernetes client against the stand-in API, and the converters
from API JSON."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tracer.apiserver import Server, serve
from tracer.apiserver.fakes import fake_exec_backend, sample_state
from tracer.health import load_health, save_health
from tracer.kube.client import KubeApi
from tracer.kube.health import collect_health, node_from_json, parse_quantity, pod_from_json


@pytest.fixture
def server() -> Iterator[Server]:
    with serve(sample_state(), fake_exec_backend()) as s:
        yield s


@pytest.fixture
def api(server: Server) -> Iterator[KubeApi]:
    a = KubeApi(str(server.kubeconfig_path))
    yield a
    a.close()


def test_collect_reads_nodes_pods_and_components(api: KubeApi) -> None:
    h = collect_health(api, ["default"])
    state = sample_state()
    assert {n.name for n in h.nodes} == {n.name for n in state.nodes}
    assert all(n.ready for n in h.nodes)
    pods = {f"{p.namespace}/{p.name}": p for p in h.pods}
    assert set(pods) == {f"{p.namespace}/{p.name}" for p in state.pods}
    assert pods["kube-system/coredns-1"].component == "dns"
    assert pods["default/web-1"].component is None
    assert pods["default/web-1"].ip == "10.244.2.3" and pods["default/web-1"].node == "n2"
    assert all(p.ready and p.restarts == 0 for p in h.pods)
    # The stand-in does not serve metrics.k8s.io, like most clusters without metrics-server.
    assert h.metrics is None
    assert h.warnings == ()


def test_a_failed_container_shows_as_not_ready(api: KubeApi, server: Server) -> None:
    # Created through the API like any pod: its only container exits 1 at once.
    api.create_pod(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "broken", "namespace": "default"},
            "spec": {
                "nodeName": "n1",
                "hostNetwork": True,
                "containers": [{"name": "app", "image": "busybox", "command": ["false"]}],
            },
        }
    )
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            broken = next(p for p in collect_health(api, ["default"]).pods if p.name == "broken")
            if not broken.ready:
                break
            time.sleep(0.1)
        assert not broken.ready
        assert broken.containers[0].state == "terminated: Error"
    finally:
        api.delete_pod("default", "broken")


def test_saved_facts_read_back_equal(api: KubeApi, tmp_path: Path) -> None:
    h = collect_health(api)
    save_health(tmp_path, h)
    assert (tmp_path / "cluster" / "health.json").stat().st_mode & 0o077 == 0
    assert load_health(tmp_path) == h
    assert load_health(tmp_path / "missing") is None


def test_oom_killed_and_restarts_from_api_json() -> None:
    # The shape the API returns for a container killed by the kernel's OOM killer and restarted.
    pod = pod_from_json(
        {
            "metadata": {"name": "web-1", "namespace": "default", "labels": {"app": "web"}},
            "spec": {"nodeName": "n2"},
            "status": {
                "phase": "Running",
                "podIP": "10.244.2.3",
                "conditions": [{"type": "Ready", "status": "False"}],
                "containerStatuses": [
                    {
                        "name": "app",
                        "ready": False,
                        "restartCount": 3,
                        "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                        "lastState": {"terminated": {"reason": "OOMKilled", "exitCode": 137}},
                    }
                ],
            },
        }
    )
    assert not pod.ready
    assert pod.restarts == 3
    assert pod.oom_killed == ("app",)
    assert pod.containers[0].state == "waiting: CrashLoopBackOff"
    assert pod.containers[0].last_exit_code == 137


def test_node_conditions_from_api_json() -> None:
    node = node_from_json(
        {
            "metadata": {"name": "n2"},
            "status": {
                "conditions": [
                    {
                        "type": "MemoryPressure",
                        "status": "True",
                        "reason": "KubeletHasInsufficientMemory",
                    },
                    {"type": "Ready", "status": "False", "reason": "KubeletNotReady"},
                ]
            },
        }
    )
    assert node.ready is False
    assert [c.type for c in node.conditions if c.status == "True"] == ["MemoryPressure"]


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("250m", 0.25),
        ("1", 1.0),
        ("1500000n", 0.0015),
        ("128Mi", 128 * 2**20),
        ("1G", 1e9),
        ("4Ki", 4096),
    ],
)
def test_quantities(text: str, value: float) -> None:
    assert parse_quantity(text) == pytest.approx(value)


@given(st.integers(min_value=0, max_value=10**6), st.sampled_from(["Ki", "Mi", "Gi"]))
def test_binary_quantities(n: int, suffix: str) -> None:
    assert parse_quantity(f"{n}{suffix}") == n * {"Ki": 1024, "Mi": 1024**2, "Gi": 1024**3}[suffix]

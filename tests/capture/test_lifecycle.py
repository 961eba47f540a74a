"""End-to-end capture against the stand-in API (real client, fake tcpdump), and its faults.

Every test ends by listing pods by label through the real client: no node pod may be left.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from kubernetes import client, config

from tracer.apiserver import Server, serve
from tracer.apiserver.fakes import fake_exec_backend, sample_state
from tracer.capture.lifecycle import CaptureSettings, KubernetesBackend, run_capture
from tracer.capture.plan import CaptureOptions, CapturePlan, PlannedPoint, make_plan
from tracer.errors import ClusterError
from tracer.kube.client import KubeApi
from tracer.kube.resolve import FromSpec, ToSpec, resolve


@pytest.fixture
def server() -> Iterator[Server]:
    s = serve(sample_state(), fake_exec_backend())
    try:
        yield s
    finally:
        s.close()


def _plan(api: KubeApi, run_id: str = "20240102-030405-abcd") -> tuple[CapturePlan, object]:
    targets, _ = resolve(api, FromSpec("pod", "client"), ToSpec("svc", "web"), uses_name=False)
    return make_plan(targets, CaptureOptions(run_id=run_id, timeout=20, margin=5)), targets


def _managed_pods(s: Server) -> list[str]:
    core = client.CoreV1Api(config.new_client_from_config(str(s.kubeconfig_path)))
    pods = core.list_pod_for_all_namespaces(label_selector="app.kubernetes.io/managed-by=pathtrace")
    return [p.metadata.name for p in pods.items]


def _frames(path: Path) -> int:
    data = path.read_bytes()
    assert data[:4] in (b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\xc3\xd4")
    off, n = 24, 0
    while off < len(data):
        (incl,) = struct.unpack_from("<I", data, off + 8)
        assert off + 16 + incl <= len(data)
        off += 16 + incl
        n += 1
    return n


SETTINGS = CaptureSettings(
    request=("curl", "-s", "http://10.96.0.20/"), grace=0.2, collect_facts=True
)


def test_capture_writes_a_complete_run(server: Server, tmp_path: Path) -> None:
    api = KubeApi(str(server.kubeconfig_path))
    plan, _ = _plan(api)
    m = run_capture(plan, KubernetesBackend(api, poll=0.05), tmp_path, SETTINGS)
    api.close()
    assert [p.name for p in m.points] == ["client", "web-1", "n1", "n2"]
    for p in m.points:
        assert p.packets and p.packets > 0
        assert _frames(tmp_path / p.file) == p.packets
        assert p.started_ns and p.stopped_ns and p.started_ns < p.stopped_ns
    assert m.request["exit_code"] == 0 and "hello from web" in m.request["stdout"]
    assert m.extra["outcome"] == "completed"
    assert {e["pod"] for e in m.extra["ephemeral_containers"]} == {"client", "web-1"}
    assert "KUBE-SERVICES" in (tmp_path / "nodes" / "n1" / "iptables-save.txt").read_text()
    # conntrack's counters, sampled before the captures and after them, beside the rules.
    for name in ("conntrack-stats-before.txt", "conntrack-stats.txt"):
        assert "insert_failed=" in (tmp_path / "nodes" / "n1" / name).read_text()
    assert "nf_conntrack_max" in (tmp_path / "nodes" / "n2" / "conntrack-limits.txt").read_text()
    assert not [w for w in m.warnings if "conntrack" in w or "sysctl" in w]
    saved = json.loads((tmp_path / "manifest.json").read_text())
    assert saved["schema"] == "pathtrace-run/v1" and saved["source"] == "kubernetes"
    assert _managed_pods(server) == []
    # tcpdump was stopped at every point, not left running in the containers.
    assert not [a for *_, a in server.running_processes() if a[0] == "tcpdump"]


def test_api_failure_midway_through_setup(server: Server, tmp_path: Path) -> None:
    api = KubeApi(str(server.kubeconfig_path))
    plan, _ = _plan(api)
    # Node pods are created first; the second ephemeral-container patch then fails.
    server.inject_fault("PATCH", r"/pods/web-1/ephemeralcontainers$", 500)
    with pytest.raises(ClusterError, match="add ephemeral container to pod default/web-1"):
        run_capture(plan, KubernetesBackend(api, poll=0.05), tmp_path, SETTINGS)
    api.close()
    assert _managed_pods(server) == []
    m = json.loads((tmp_path / "manifest.json").read_text())
    assert m["extra"]["outcome"].startswith("failed: add ephemeral container")
    for p in m["points"]:
        assert _frames(tmp_path / p["file"]) == 0


def test_cut_stream_leaves_valid_partial_captures(
    server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATHTRACE_FAKE_TCPDUMP", "cut")
    api = KubeApi(str(server.kubeconfig_path))
    plan, _ = _plan(api)
    m = run_capture(plan, KubernetesBackend(api, poll=0.05), tmp_path, SETTINGS)
    api.close()
    for p in m.points:
        assert p.packets == 3 == _frames(tmp_path / p.file)
    assert any("cut mid-packet" in w for w in m.warnings)
    assert _managed_pods(server) == []


class _Interrupting(KubernetesBackend):
    def run(
        self, point: PlannedPoint, argv: Sequence[str], timeout: float
    ) -> tuple[int | None, bytes, bytes, str]:
        if argv[0] == "curl":
            raise KeyboardInterrupt
        return super().run(point, argv, timeout)


def test_ctrl_c_during_capture(server: Server, tmp_path: Path) -> None:
    api = KubeApi(str(server.kubeconfig_path))
    plan, _ = _plan(api)
    with pytest.raises(KeyboardInterrupt):
        run_capture(plan, _Interrupting(api, poll=0.05), tmp_path, SETTINGS)
    api.close()
    assert _managed_pods(server) == []
    m = json.loads((tmp_path / "manifest.json").read_text())
    assert m["extra"]["outcome"] == "interrupted"
    for p in m["points"]:
        assert _frames(tmp_path / p["file"]) == p["packets"]


def test_tcpdump_failure_names_the_point(
    server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATHTRACE_FAKE_TCPDUMP", "fail")
    api = KubeApi(str(server.kubeconfig_path))
    plan, _ = _plan(api)
    with pytest.raises(ClusterError, match=r"point client: tcpdump ended .*permission"):
        run_capture(plan, KubernetesBackend(api, poll=0.05), tmp_path, SETTINGS)
    api.close()
    assert _managed_pods(server) == []


def test_request_here_reports_a_missing_command_and_a_timeout(tmp_path: Path) -> None:
    from tracer.capture.lifecycle import run_here

    code, _, _, msg = run_here([str(tmp_path / "no-such-program"), "x"], 5.0)
    assert code is None and msg.endswith("no-such-program: command not found")
    code, out, _, msg = run_here(["sh", "-c", "echo started; exec sleep 30"], 0.5)
    assert code is None and msg == "timed out after 0.5s" and out == b"started\n"

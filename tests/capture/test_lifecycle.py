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
from tracer.capture.backend import KubernetesBackend
from tracer.capture.lifecycle import run_capture
from tracer.capture.plan import CaptureOptions, CapturePlan, PlannedPoint, make_plan
from tracer.capture.session import CaptureSettings
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


def test_a_meshed_pods_own_facts_are_read_through_its_debug_container(
    server: Server, tmp_path: Path
) -> None:
    from dataclasses import replace

    api = KubeApi(str(server.kubeconfig_path))
    plan, targets = _plan(api)
    meshed = [
        replace(p, mesh="istio") if p.kind == "ephemeral" and p.name == "client" else p
        for p in plan.points
    ]
    plan = replace(plan, points=tuple(meshed))
    run_capture(plan, KubernetesBackend(api, poll=0.05), tmp_path, SETTINGS)
    api.close()
    for name in ("iptables-save.txt", "conntrack.txt", "links.json"):
        assert (tmp_path / "pods" / "client" / name).is_file()
    assert not (tmp_path / "pods" / "web-1").exists()  # not meshed: nothing read there
    assert _managed_pods(server) == []


def test_a_cilium_agent_on_the_path_is_read_not_changed(tmp_path: Path) -> None:
    """A Cilium agent pod on a node of the path: resolve finds it, the plan says it is only
    read, and the capture saves its load-balancer's dumps beside the node's facts."""
    from dataclasses import replace

    from tracer.apiserver.state import PodSpec

    state = sample_state()
    agent = PodSpec(
        "kube-system",
        "cilium-x1",
        "n1",
        "10.0.0.1",
        containers=("cilium-agent",),
        labels={"k8s-app": "cilium"},
        host_network=True,
    )
    s = serve(replace(state, pods=(*state.pods, agent)), fake_exec_backend())
    try:
        api = KubeApi(str(s.kubeconfig_path))
        plan, targets = _plan(api)
        assert [a.name for a in targets.lb_agents] == ["cilium-x1"]  # type: ignore[attr-defined]
        assert [(a.pod, a.container) for a in plan.lb_agents] == [("cilium-x1", "cilium-agent")]
        from tracer.capture.plan import describe_changes, plan_changes

        assert plan_changes(plan)["read_only_exec"] == [
            "kube-system/cilium-x1:cilium-agent (node n1)"
        ]
        assert any("reads (changes nothing)" in line for line in describe_changes(plan))
        m = run_capture(plan, KubernetesBackend(api, poll=0.05), tmp_path, SETTINGS)
        api.close()
        # The stand-in's agent has no cilium-dbg: each read fails with a note, nothing else.
        notes = [w for w in m.warnings if "kube-system/cilium-x1: cilium-dbg" in w]
        assert len(notes) == 3 and all("No such file" in w for w in notes)
        assert not (tmp_path / "nodes" / "n1" / "cilium-service-list.txt").exists()
        assert m.extra["outcome"] == "completed"
        assert _managed_pods(s) == []
    finally:
        s.close()


def test_lb_agent_dumps_are_saved_beside_the_nodes_facts(tmp_path: Path) -> None:
    from dataclasses import replace

    from tracer.capture.facts import collect_lb_agent_facts
    from tracer.capture.plan import LB_AGENT_FACT_COMMANDS

    s = serve(sample_state(), fake_exec_backend())
    try:
        api = KubeApi(str(s.kubeconfig_path))
        plan, _ = _plan(api)
        api.close()
    finally:
        s.close()
    agent = PlannedPoint("lb-agent-n1", "node", "node", "n1", "kube-system", "cilium-x1",
                         "cilium-agent", "", ())  # fmt: skip
    plan = replace(plan, lb_agents=(agent,))
    ran: list[tuple[str, tuple[str, ...]]] = []

    class Agent:
        def run(
            self, point: PlannedPoint, argv: Sequence[str], timeout: float
        ) -> tuple[int, bytes, bytes, str]:
            ran.append((point.pod, tuple(argv)))
            return 0, f"output of {' '.join(argv)}\n".encode(), b"", ""

    notes: list[str] = []
    collect_lb_agent_facts(plan, Agent(), tmp_path, notes)  # type: ignore[arg-type]
    assert notes == []
    assert ran == [("cilium-x1", argv) for argv in LB_AGENT_FACT_COMMANDS.values()]
    for name, argv in LB_AGENT_FACT_COMMANDS.items():
        assert (tmp_path / "nodes" / "n1" / name).read_text() == f"output of {' '.join(argv)}\n"

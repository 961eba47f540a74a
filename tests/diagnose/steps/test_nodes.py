"""Step 1 on hand-made health facts: the path's pods and the nodes flagged, other pods counted."""

from __future__ import annotations

from tests.diagnose.steps.facts import run_facts
from tracer.diagnose.steps.nodes import step_health
from tracer.health import ContainerHealth, HealthFacts, NodeCondition, NodeHealth, PodHealth


def _pod(name: str, **kw: object) -> PodHealth:
    base: dict[str, object] = dict(
        namespace="default", name=name, node="n1", ip="10.244.1.9", phase="Running", ready=True
    )
    base.update(kw)
    return PodHealth(**base)  # type: ignore[arg-type]


def test_health_flags_path_pods_and_nodes_but_only_counts_others() -> None:
    oom = ContainerHealth(
        "app", ready=True, restarts=2, state="running", last_reason="OOMKilled", last_exit_code=137
    )
    h = HealthFacts(
        collected="now",
        nodes=(
            NodeHealth("n1", (NodeCondition("Ready", "True"),)),
            NodeHealth("n2", (NodeCondition("Ready", "False", "KubeletNotReady"),)),
        ),
        pods=(
            _pod("client", containers=(oom,)),
            _pod("coredns-1", namespace="kube-system", ready=False, component="dns"),
            _pod("unrelated", ready=False),
            _pod("kube-proxy-x", namespace="kube-system", component="kube-proxy"),
        ),
    )
    found = {(f.severity, f.title) for f in step_health(run_facts(h))}
    titles = " | ".join(t for _, t in found)
    assert ("error", "Node n2 is not Ready (KubeletNotReady: None)") in found
    assert any(s == "error" and "cluster DNS pod kube-system/coredns-1" in t for s, t in found)
    assert any(s == "warning" and "default/client was OOMKilled" in t for s, t in found)
    assert "unrelated" not in " ".join(t for s, t in found if s != "info"), titles
    assert any(s == "info" and "1 pod off the path is not healthy" in t for s, t in found)


def test_health_absent_is_only_information() -> None:
    assert [f.severity for f in step_health(run_facts())] == ["info"]

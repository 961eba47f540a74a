"""RUN/cluster/health.json: what is saved reads back equal, and a bad file names its field."""

from __future__ import annotations

from pathlib import Path

import pytest

from tracer.errors import InputError
from tracer.health import (
    ContainerHealth,
    HealthFacts,
    NodeCondition,
    NodeHealth,
    PodHealth,
    Usage,
    health_from_json,
    health_to_json,
    load_health,
    save_health,
)


def test_every_field_reads_back_equal(tmp_path: Path) -> None:
    oom = ContainerHealth("app", False, 3, "waiting: CrashLoopBackOff", "OOMKilled", 137)
    h = HealthFacts(
        collected="2026-01-01T00:00:00+00:00",
        nodes=(NodeHealth("n1", (NodeCondition("Ready", "False", "KubeletNotReady", "m"),)),),
        pods=(
            PodHealth("default", "web-1", "n1", "10.244.1.3", "Running", False, (oom,)),
            PodHealth("kube-system", "coredns-1", None, None, "Pending", False, component="dns"),
        ),
        metrics=(Usage("node", "n1", None, 250, 2**30),),
        node_capacity={"n1": (2000, 2**32)},
        warnings=("list pods in other: forbidden",),
    )
    save_health(tmp_path, h)
    assert (tmp_path / "cluster" / "health.json").stat().st_mode & 0o077 == 0
    assert load_health(tmp_path) == h
    assert load_health(tmp_path / "missing") is None


def test_bad_health_file_names_the_field(tmp_path: Path) -> None:
    (tmp_path / "cluster").mkdir()
    (tmp_path / "cluster" / "health.json").write_text(
        '{"schema": "pathtrace-health/v1", "pods": [{"x": 1}]}'
    )
    with pytest.raises(InputError, match="health.json: field 'pods'"):
        load_health(tmp_path)
    with pytest.raises(InputError, match="schema"):
        health_from_json({"schema": "other"})
    empty = health_from_json({"schema": "pathtrace-health/v1"})
    assert health_from_json(health_to_json(empty)) == empty

"""Where a capture runs: the steps a backend offers (`CaptureBackend`), the cluster's backend
(`KubernetesBackend`: node pods and ephemeral containers through tracer.kube), and running a
command on this machine (`run_here`, where an external client is).
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Sequence
from typing import Any, Protocol

from tracer.capture.plan import CapturePlan, PlannedPoint
from tracer.errors import ClusterError, PathtraceError


class PointStream(Protocol):
    def read(self, timeout: float = 0.5) -> tuple[bytes, bytes]: ...
    def is_open(self) -> bool: ...
    def status(self) -> tuple[int | None, str]: ...
    def close(self) -> None: ...


class CaptureBackend(Protocol):
    """The four steps of a capture on some infrastructure, plus running a command at a point."""

    def setup(self, plan: CapturePlan) -> None: ...
    def start(self, point: PlannedPoint) -> PointStream: ...
    def stop(self, point: PlannedPoint) -> None: ...
    def run(
        self, point: PlannedPoint, argv: Sequence[str], timeout: float
    ) -> tuple[int | None, bytes, bytes, str]: ...
    def cleanup(self, plan: CapturePlan) -> list[str]: ...


def run_here(argv: Sequence[str], timeout: float) -> tuple[int | None, bytes, bytes, str]:
    """Run `argv` on this machine (no shell): (exit code or None, stdout, stderr, message)."""
    try:
        r = subprocess.run(list(argv), capture_output=True, timeout=timeout, check=False)
    except FileNotFoundError:
        return None, b"", b"", f"{argv[0]}: command not found"
    except PermissionError:
        return None, b"", b"", f"{argv[0]}: permission denied"
    except subprocess.TimeoutExpired as e:
        # subprocess.run has killed it; keep what it wrote before the timeout.
        return None, e.stdout or b"", e.stderr or b"", f"timed out after {timeout:g}s"
    return r.returncode, r.stdout, r.stderr, ""


class KubernetesBackend:
    """Node pods and ephemeral containers through tracer.kube (a `KubeApi`)."""

    def __init__(self, api: Any, *, ready_timeout: float = 120.0, poll: float = 0.5) -> None:
        self.api = api
        self.ready_timeout = ready_timeout
        self.poll = poll
        self.created: list[tuple[str, str]] = []
        self.added: list[tuple[str, str, str]] = []

    def setup(self, plan: CapturePlan) -> None:
        for n in plan.node_pods:
            # Record before the call: a create that times out may still have happened.
            self.created.append((n.namespace, n.name))
            self.api.create_pod(n.manifest)
        for e in plan.ephemeral:
            self.api.add_ephemeral_container(e.namespace, e.pod, e.spec)
            self.added.append((e.namespace, e.pod, e.name))
        end = time.monotonic() + self.ready_timeout
        for n in plan.node_pods:
            while True:
                phase, detail = self.api.pod_phase(n.namespace, n.name)
                if phase == "Running":
                    break
                if phase in ("Failed", "Succeeded") or "BackOff" in detail or "Err" in detail:
                    raise ClusterError(
                        f"node pod {n.namespace}/{n.name} on {n.node} is {phase}"
                        + (f": {detail}" if detail else "")
                    )
                if time.monotonic() > end:
                    raise ClusterError(
                        f"node pod {n.namespace}/{n.name} on {n.node} not Running after "
                        f"{self.ready_timeout:g}s ({phase} {detail})"
                    )
                time.sleep(self.poll)
        for e in plan.ephemeral:
            while True:
                state = self.api.ephemeral_state(e.namespace, e.pod, e.name)
                if state == "running":
                    break
                if state.startswith("terminated") or "BackOff" in state or "Err" in state:
                    raise ClusterError(
                        f"ephemeral container {e.name} in {e.namespace}/{e.pod}: {state}"
                    )
                if time.monotonic() > end:
                    raise ClusterError(
                        f"ephemeral container {e.name} in {e.namespace}/{e.pod} not running "
                        f"after {self.ready_timeout:g}s ({state})"
                    )
                time.sleep(self.poll)

    def start(self, point: PlannedPoint) -> PointStream:
        stream: PointStream = self.api.exec_stream(
            point.namespace, point.pod, point.container, point.argv
        )
        return stream

    def stop(self, point: PlannedPoint) -> None:
        from tracer.capture.pods import stop_argv

        self.api.exec_run(point.namespace, point.pod, point.container, stop_argv(), 10.0)

    def run(
        self, point: PlannedPoint, argv: Sequence[str], timeout: float
    ) -> tuple[int | None, bytes, bytes, str]:
        result: tuple[int | None, bytes, bytes, str] = self.api.exec_run(
            point.namespace, point.pod, point.container, list(argv), timeout
        )
        return result

    def cleanup(self, plan: CapturePlan) -> list[str]:
        notes = []
        for ns, name in self.created:
            try:
                self.api.delete_pod(ns, name)
            except PathtraceError as e:
                notes.append(
                    f"node pod {ns}/{name} could not be deleted ({e.message}); "
                    f"run: pathtrace cleanup -n {ns} --run {plan.run_id}"
                )
        self.created.clear()
        return notes

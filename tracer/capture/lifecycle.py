"""Carry out a capture plan: setup, start, request, stop, facts, cleanup — and the manifest.

`run_capture` drives any `CaptureBackend` (the cluster's is `KubernetesBackend`; tests use a
fake) and guarantees, on every exit path (success, error, Ctrl-C, timeout): node pods deleted,
every capture closed as a valid pcap, and a manifest written that says what happened. It never
prints: progress goes to a callback.
"""

from __future__ import annotations

import re
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from tracer.capture.plan import CapturePlan, PlannedPoint
from tracer.capture.writer import PcapSink
from tracer.errors import ClusterError, PathtraceError
from tracer.model import CapturePoint
from tracer.rundir import Manifest, Service, write_manifest, write_private

_DROPPED = re.compile(rb"(\d+) packets? dropped by kernel")


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


@dataclass
class PointState:
    point: PlannedPoint
    sink: PcapSink
    stream: PointStream | None = None
    stderr: bytearray = field(default_factory=bytearray)
    listening: threading.Event = field(default_factory=threading.Event)
    ended: threading.Event = field(default_factory=threading.Event)
    started_ns: int | None = None
    stopped_ns: int | None = None
    error: str | None = None


Progress = Callable[[Mapping[str, tuple[int, int]]], None]


@dataclass(frozen=True)
class CaptureSettings:
    request: tuple[str, ...] | None = None
    # Run `request` on this machine (where an external client is), not in the client pod.
    request_here: bool = False
    duration: float = 0.0
    grace: float = 1.0
    listen_timeout: float = 30.0
    request_timeout: float = 60.0
    stop_timeout: float = 5.0
    collect_facts: bool = True
    max_bytes: int | None = None  # per point; later packets are dropped, whole records kept


def _pump(st: PointState) -> None:
    assert st.stream is not None
    try:
        while True:
            out, err = st.stream.read(0.2)
            if out:
                st.sink.write(out)
            if err:
                st.stderr += err
                if not st.listening.is_set() and b"listening on" in st.stderr:
                    st.started_ns = time.time_ns()
                    st.listening.set()
            if not st.stream.is_open():
                out, err = st.stream.read(0)
                st.sink.write(out)
                st.stderr += err
                return
    except PathtraceError as e:
        st.error = e.message
    except Exception as e:  # a broken transport must end this point, not the whole run
        st.error = f"capture stream failed: {e}"
    finally:
        st.stopped_ns = time.time_ns()
        st.ended.set()


def run_capture(
    plan: CapturePlan,
    backend: CaptureBackend,
    run_dir: str | Path,
    settings: CaptureSettings,
    *,
    services: Sequence[Service] = (),
    warnings: Sequence[str] = (),
    source: str = "kubernetes",
    progress: Progress | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Manifest:
    """Capture at every point of `plan` at once and write RUN; returns the manifest written.

    Errors and KeyboardInterrupt propagate after cleanup, with the partial run still written.
    """
    run = Path(run_dir)
    (run / "points").mkdir(parents=True, exist_ok=True)
    states = {
        p.name: PointState(
            p, PcapSink(run / "points" / f"{p.name}.pcap", p.interface, settings.max_bytes)
        )
        for p in plan.points
    }
    notes: list[str] = [*warnings, *plan.warnings]
    request: dict[str, Any] = {}
    stop_progress = threading.Event()
    pumps: list[threading.Thread] = []
    outcome = "interrupted"
    # The run's record comes first: whatever happens next (even a kill -9), it names every
    # object the run is about to create, for `pathtrace cleanup RUN`.
    write_manifest(
        run, _manifest(plan, states, services, {}, [], source, "capturing", dict(extra or {}))
    )
    try:
        backend.setup(plan)
        if settings.collect_facts:
            _collect_facts(plan, backend, run, notes, plan.node_facts_before)
        for st in states.values():
            st.stream = backend.start(st.point)
            t = threading.Thread(
                target=_pump, args=(st,), name=f"pump-{st.point.name}", daemon=True
            )
            t.start()
            pumps.append(t)
        if progress is not None:
            threading.Thread(
                target=_report, args=(states, progress, stop_progress), daemon=True
            ).start()
        _wait_listening(states, settings.listen_timeout)
        if settings.request is not None:
            where: dict[str, str]
            if settings.request_here:
                where = {"host": socket.gethostname()}
                code, out, err, msg = run_here(settings.request, settings.request_timeout)
            else:
                point = next((p for p in plan.points if p.name == plan.request_point), None)
                if point is None:
                    raise ClusterError(
                        "--request needs a capture in the client pod, and there is none "
                        "(pod capture refused)"
                    )
                where = {"point": point.name}
                code, out, err, msg = backend.run(point, settings.request, settings.request_timeout)
            request = {
                "argv": list(settings.request),
                **where,
                "exit_code": code,
                "stdout": out.decode("utf-8", "replace")[:4096],
                "stderr": err.decode("utf-8", "replace")[:4096],
            }
            if msg:
                request["message"] = msg
            if code != 0:
                notes.append(f"the request exited with {code if code is not None else msg}")
        else:
            request = {"duration_s": settings.duration}
            _sleep(settings.duration, states)
        # Packets still in flight (the last ACK, FIN) reach every point only after a moment.
        time.sleep(settings.grace)
        _stop_all(plan, backend, states, settings.stop_timeout, notes)
        if settings.collect_facts:
            _collect_facts(plan, backend, run, notes, plan.node_facts)
        outcome = "completed"
    except PathtraceError as e:
        outcome = f"failed: {e.message}"
        raise
    finally:
        stop_progress.set()
        for st in states.values():
            if st.stream is not None:
                st.stream.close()
        for t in pumps:
            t.join(timeout=2)
        for st in states.values():
            st.sink.close()
        try:
            notes += backend.cleanup(plan)
        finally:
            manifest = _manifest(
                plan, states, services, request, notes, source, outcome, dict(extra or {})
            )
            write_manifest(run, manifest)
    return manifest


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


def _report(states: Mapping[str, PointState], progress: Progress, stop: threading.Event) -> None:
    while not stop.wait(0.5):
        progress({n: (st.sink.packets, st.sink.bytes) for n, st in states.items()})


def _wait_listening(states: Mapping[str, PointState], timeout: float) -> None:
    end = time.monotonic() + timeout
    for st in states.values():
        while not st.listening.wait(0.1):
            if st.ended.is_set():
                code, msg = st.stream.status() if st.stream else (None, "")
                err = st.stderr.decode("utf-8", "replace").strip() or st.error or msg
                raise ClusterError(
                    f"point {st.point.name}: tcpdump ended before capturing "
                    f"(exit {code}): {err or 'no output'}"
                )
            if time.monotonic() > end:
                raise ClusterError(
                    f"point {st.point.name}: tcpdump did not start listening within "
                    f"{timeout:g}s (stderr: {st.stderr.decode('utf-8', 'replace').strip()!r})"
                )


def _sleep(seconds: float, states: Mapping[str, PointState]) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if all(st.ended.is_set() for st in states.values()):
            return  # every tcpdump hit -c or died: nothing left to wait for
        time.sleep(min(0.2, max(0.0, end - time.monotonic())))


def _stop_all(
    plan: CapturePlan,
    backend: CaptureBackend,
    states: Mapping[str, PointState],
    timeout: float,
    notes: list[str],
) -> None:
    threads = []
    for st in states.values():
        if st.ended.is_set():
            continue
        t = threading.Thread(target=_stop_one, args=(backend, st, notes), daemon=True)
        t.start()
        threads.append(t)
    for t in threads:
        t.join(timeout)
    end = time.monotonic() + timeout
    for st in states.values():
        st.ended.wait(max(0.0, end - time.monotonic()))
        if not st.ended.is_set():
            notes.append(
                f"point {st.point.name}: tcpdump did not stop in {timeout:g}s; stream closed"
            )


def _stop_one(backend: CaptureBackend, st: PointState, notes: list[str]) -> None:
    try:
        backend.stop(st.point)
    except PathtraceError as e:
        notes.append(f"point {st.point.name}: stop failed: {e.message}")


# Node facts whose absence is normal: legacy iptables, IPVS, kube-proxy's metrics port, IPv6.
_OPTIONAL_FACTS = frozenset(
    ("iptables-legacy-save.txt", "ipvsadm.txt", "proxy-mode.txt", "ip6tables-save.txt")
)


def _collect_facts(
    plan: CapturePlan,
    backend: CaptureBackend,
    run: Path,
    notes: list[str],
    facts: Mapping[str, Sequence[str]],
) -> None:
    for p in plan.points:
        if p.kind != "node":
            continue
        d = run / "nodes" / p.node
        d.mkdir(parents=True, exist_ok=True)
        for name, argv in facts.items():
            try:
                code, out, err, msg = backend.run(p, argv, 20.0)
            except PathtraceError as e:
                notes.append(f"node {p.node}: {' '.join(argv)} failed: {e.message}")
                continue
            if code == 0:
                write_private(d / name, out)
            elif name not in _OPTIONAL_FACTS:
                # Those are often absent by design; the others say something is off.
                why = err.decode("utf-8", "replace").strip() or msg or f"exit {code}"
                notes.append(f"node {p.node}: {' '.join(argv)}: {why}")


def _manifest(
    plan: CapturePlan,
    states: Mapping[str, PointState],
    services: Sequence[Service],
    request: Mapping[str, Any],
    notes: list[str],
    source: str,
    outcome: str,
    extra: dict[str, Any],
) -> Manifest:
    points = []
    for st in states.values():
        p = st.point
        m = _DROPPED.search(bytes(st.stderr))
        if st.error:
            notes.append(f"point {p.name}: {st.error}")
        if st.sink.full:
            notes.append(
                f"point {p.name}: reached --max-bytes {st.sink.max_bytes}; later packets "
                f"were dropped, the capture keeps {st.sink.packets} complete packets"
            )
        if st.sink.truncated:
            notes.append(
                f"point {p.name}: the stream was cut mid-packet; the capture keeps "
                f"{st.sink.packets} complete packets"
            )
        if st.sink.error:
            notes.append(f"point {p.name}: {st.sink.error}")
        points.append(
            CapturePoint(
                name=p.name,
                role=p.role,
                file=f"points/{p.name}.pcap",
                node=p.node,
                pod=p.target_pod or p.pod,
                namespace=p.namespace,
                container=p.container,
                interface=p.interface,
                started_ns=st.started_ns,
                stopped_ns=st.stopped_ns,
                packets=st.sink.packets,
                dropped=int(m.group(1)) if m else None,
            )
        )
    extra = {
        **extra,
        "run_id": plan.run_id,
        "outcome": outcome,
        "filter": plan.filter,
        "labels": dict(plan.labels),
        "node_pods": [
            {"namespace": n.namespace, "name": n.name, "node": n.node} for n in plan.node_pods
        ],
        # Ephemeral containers can never be removed from a pod: say which ones this run added.
        "ephemeral_containers": [
            {"namespace": e.namespace, "pod": e.pod, "container": e.name} for e in plan.ephemeral
        ],
    }
    return Manifest(
        source=source,
        created=datetime.now(UTC).isoformat(timespec="seconds"),
        points=tuple(points),
        services=tuple(services),
        request=dict(request),
        warnings=tuple(dict.fromkeys(notes)),
        extra=extra,
    )


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
        from tracer.capture.plan import stop_argv

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

"""Carry out a capture plan: setup, start, request, stop, facts, cleanup — and the manifest.

`run_capture` drives any `CaptureBackend` (the cluster's is `KubernetesBackend`; tests use a
fake) and guarantees, on every exit path (success, error, Ctrl-C, timeout): node pods deleted,
every capture closed as a valid pcap, and a manifest written that says what happened. It never
prints: progress goes to a callback.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tracer.capture.backend import CaptureBackend
from tracer.capture.facts import collect_lb_agent_facts, collect_node_facts, collect_pod_facts
from tracer.capture.incident import Incident
from tracer.capture.manifest import build_manifest
from tracer.capture.plan import CapturePlan
from tracer.capture.session import (
    CaptureSettings,
    PointState,
    Progress,
    WatchProgress,
    run_request,
    sleep_while_capturing,
)
from tracer.capture.writer import PcapSink
from tracer.errors import ClusterError, PathtraceError
from tracer.rundir import Manifest, Service, write_manifest


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
    watch_progress: WatchProgress | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Manifest:
    """Capture at every point of `plan` at once and write RUN; returns the manifest written.

    With `settings.until`, wait for the condition instead (see `Incident.wait`); the
    manifest's `extra.outcome` is then `triggered` or `quiet`. Errors and KeyboardInterrupt
    propagate after cleanup, with the partial run still written (a ring keeps all it holds).
    """
    run = Path(run_dir)
    (run / "points").mkdir(parents=True, exist_ok=True)
    incident = Incident(plan, settings, run) if settings.until is not None else None
    states = {
        p.name: PointState(
            p,
            incident.sink(p)
            if incident is not None
            else PcapSink(run / "points" / f"{p.name}.pcap", p.interface, settings.max_bytes),
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
        run, build_manifest(plan, states, services, {}, [], source, "capturing", dict(extra or {}))
    )
    try:
        backend.setup(plan)
        if settings.collect_facts:
            collect_node_facts(plan, backend, run, notes, plan.node_facts_before)
        for st in states.values():
            st.stream = backend.start(st.point)
            t = threading.Thread(
                target=_pump, args=(st,), name=f"pump-{st.point.name}", daemon=True
            )
            t.start()
            pumps.append(t)
        if progress is not None and incident is None:
            threading.Thread(
                target=_report, args=(states, progress, stop_progress), daemon=True
            ).start()
        _wait_listening(states, settings.listen_timeout)
        if incident is not None:
            request = incident.wait(backend, states, notes, watch_progress)
        elif settings.request is not None:
            request = run_request(plan, backend, settings, settings.request)
            if request.get("exit_code") != 0:
                code = request.get("exit_code")
                notes.append(
                    f"the request exited with {code if code is not None else request['message']}"
                )
        else:
            request = {"duration_s": settings.duration}
            sleep_while_capturing(settings.duration, states)
        if incident is None:
            # Packets still in flight (the last ACK, FIN) reach every point only after a moment.
            time.sleep(settings.grace)
        _stop_all(plan, backend, states, settings.stop_timeout, notes)
        if incident is None:
            outcome = "completed"
        else:
            outcome = "triggered" if incident.trigger is not None else "quiet"
        if settings.collect_facts and not (outcome == "quiet" and settings.discard_if_quiet):
            collect_node_facts(plan, backend, run, notes, plan.node_facts)
            collect_pod_facts(plan, backend, run, notes)
            collect_lb_agent_facts(plan, backend, run, notes)
    except PathtraceError as e:
        outcome = f"failed: {e.message}"
        raise
    finally:
        stop_progress.set()
        if incident is not None:
            incident.stop_requests.set()
        for st in states.values():
            if st.stream is not None:
                st.stream.close()
        for t in pumps:
            t.join(timeout=2)
        extra = dict(extra or {})
        if incident is not None:
            extra.update(incident.finish(states, outcome, notes))
        for st in states.values():
            st.sink.close()
        try:
            notes += backend.cleanup(plan)
        finally:
            manifest = build_manifest(
                plan, states, services, request, notes, source, outcome, extra
            )
            write_manifest(run, manifest)
    return manifest


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

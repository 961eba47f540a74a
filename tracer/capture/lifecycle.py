"""Carry out a capture plan: setup, start, request, stop, facts, cleanup — and the manifest.

`run_capture` drives any `CaptureBackend` (the cluster's is `KubernetesBackend`; tests use a
fake) and guarantees, on every exit path (success, error, Ctrl-C, timeout): node pods deleted,
every capture closed as a valid pcap, and a manifest written that says what happened. It never
prints: progress goes to a callback.
"""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from tracer.capture.plan import (
    LB_AGENT_FACT_COMMANDS,
    POD_FACT_COMMANDS,
    CapturePlan,
    PlannedPoint,
)
from tracer.capture.ring import DEFAULT_RING_BYTES, RingSink
from tracer.capture.watch import Trigger, Until, Watcher
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
    sink: PcapSink | RingSink
    stream: PointStream | None = None
    stderr: bytearray = field(default_factory=bytearray)
    listening: threading.Event = field(default_factory=threading.Event)
    ended: threading.Event = field(default_factory=threading.Event)
    started_ns: int | None = None
    stopped_ns: int | None = None
    error: str | None = None


Progress = Callable[[Mapping[str, tuple[int, int]]], None]
# While `--until` waits: elapsed, what is watched where, connections followed, requests run and
# packets/bytes seen per point (see `_watch_status`).
WatchProgress = Callable[[Mapping[str, Any]], None]


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
    # Incident mode (`--until`): every point keeps a ring of `ring_bytes`, the watched point's
    # stream is judged live, and `duration` bounds the wait. The run keeps the window
    # [trigger - keep_before, trigger + keep_after] of every ring.
    until: Until | None = None
    ring_bytes: int = DEFAULT_RING_BYTES
    keep_before: float = 10.0
    keep_after: float = 2.0
    repeat: int = 1  # --request is run up to this many times, `interval` apart, until it fires
    interval: float = 1.0
    discard_if_quiet: bool = False


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

    With `settings.until`, wait for the condition instead (see `_Incident.wait`); the
    manifest's `extra.outcome` is then `triggered` or `quiet`. Errors and KeyboardInterrupt
    propagate after cleanup, with the partial run still written (a ring keeps all it holds).
    """
    run = Path(run_dir)
    (run / "points").mkdir(parents=True, exist_ok=True)
    incident = _Incident(plan, settings, run) if settings.until is not None else None
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
        if progress is not None and incident is None:
            threading.Thread(
                target=_report, args=(states, progress, stop_progress), daemon=True
            ).start()
        _wait_listening(states, settings.listen_timeout)
        if incident is not None:
            request = incident.wait(backend, states, notes, watch_progress)
        elif settings.request is not None:
            request = _request(plan, backend, settings, settings.request)
            if request.get("exit_code") != 0:
                code = request.get("exit_code")
                notes.append(
                    f"the request exited with {code if code is not None else request['message']}"
                )
        else:
            request = {"duration_s": settings.duration}
            _sleep(settings.duration, states)
        if incident is None:
            # Packets still in flight (the last ACK, FIN) reach every point only after a moment.
            time.sleep(settings.grace)
        _stop_all(plan, backend, states, settings.stop_timeout, notes)
        if incident is None:
            outcome = "completed"
        else:
            outcome = "triggered" if incident.trigger is not None else "quiet"
        if settings.collect_facts and not (outcome == "quiet" and settings.discard_if_quiet):
            _collect_facts(plan, backend, run, notes, plan.node_facts)
            _collect_pod_facts(plan, backend, run, notes)
            _collect_lb_agent_facts(plan, backend, run, notes)
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
            manifest = _manifest(plan, states, services, request, notes, source, outcome, extra)
            write_manifest(run, manifest)
    return manifest


def _request(
    plan: CapturePlan, backend: CaptureBackend, settings: CaptureSettings, argv: Sequence[str]
) -> dict[str, Any]:
    """Run the request once, where it belongs; what it did, for the manifest."""
    where: dict[str, str]
    if settings.request_here:
        where = {"host": socket.gethostname()}
        code, out, err, msg = run_here(argv, settings.request_timeout)
    else:
        point = next((p for p in plan.points if p.name == plan.request_point), None)
        if point is None:
            raise ClusterError(
                "--request needs a capture in the client pod, and there is none "
                "(pod capture refused)"
            )
        where = {"point": point.name}
        code, out, err, msg = backend.run(point, argv, settings.request_timeout)
    request = {
        "argv": list(argv),
        **where,
        "exit_code": code,
        "stdout": out.decode("utf-8", "replace")[:4096],
        "stderr": err.decode("utf-8", "replace")[:4096],
    }
    if msg:
        request["message"] = msg
    return request


def watched_point(plan: CapturePlan) -> PlannedPoint | None:
    """Where `--until` judges the traffic: the client pod, else the first node on the path."""
    by_name = {p.name: p for p in plan.points}
    if plan.request_point in by_name:
        return by_name[plan.request_point]
    return next((p for p in plan.points if p.role == "client"), None) or next(
        (p for p in plan.points if p.kind == "node"), plan.points[0] if plan.points else None
    )


PROTECT_MARGIN_NS = 200_000_000


class _Incident:
    """`--until`: the rings, the watcher, the requests, the trigger and the window kept."""

    def __init__(self, plan: CapturePlan, settings: CaptureSettings, run: Path) -> None:
        assert settings.until is not None
        self.plan = plan
        self.run = run
        self.settings = settings
        self.watcher = Watcher(settings.until)
        self.watched = watched_point(plan)
        self.lock = threading.Lock()
        self.trigger: Trigger | None = None
        self.detected_ns: int | None = None  # when this machine saw the condition hold
        self.stop_requested_ns: int | None = None
        self.armed_ns: int | None = None
        self.ended_ns: int | None = None
        self.stop_requests = threading.Event()
        self.runs: list[dict[str, Any]] = []
        self.sinks: list[RingSink] = []

    def sink(self, p: PlannedPoint) -> RingSink:
        feed = self._feed if self.watched is not None and p.name == self.watched.name else None
        sink = RingSink(
            self.run / "points" / f"{p.name}.pcap",
            self.run / ".ring" / p.name,
            self.settings.ring_bytes,
            p.interface,
            on_record=feed,
        )
        self.sinks.append(sink)
        return sink

    def _feed(self, linktype: int, ts: int, record: bytes, off: int, caplen: int) -> None:
        with self.lock:
            if self.watcher.linktype is None:
                self.watcher.linktype = linktype
            if self.trigger is None and self.watcher.feed(ts, record, off, caplen) is not None:
                self._fired()

    def _fired(self) -> None:
        self.trigger = trig = self.watcher.fired
        self.detected_ns = time.time_ns()
        assert trig is not None
        # From now on no ring lets go of the triggering connection (see RingSink.protect): if
        # a ring fills up, what goes is the end of --keep-after, never the failing request.
        # The margin covers clocks of other nodes a little behind this point's.
        for sink in self.sinks:
            sink.protect(trig.started_ns - PROTECT_MARGIN_NS)

    def window_start(self, trig: Trigger) -> int:
        # The window also holds the whole triggering connection, however long ago it began.
        return min(trig.at_ns - int(self.settings.keep_before * 1e9), trig.started_ns)

    def wait(
        self,
        backend: CaptureBackend,
        states: Mapping[str, PointState],
        notes: list[str],
        progress: WatchProgress | None,
    ) -> dict[str, Any]:
        """Until the condition holds, the wait ends or every point has ended; then keep_after."""
        s = self.settings
        self.armed_ns = time.time_ns()
        start = time.monotonic()
        end = start + s.duration
        requests = None
        if s.request is not None:
            requests = threading.Thread(
                target=self._requests, args=(backend,), name="requests", daemon=True
            )
            requests.start()
        u = s.until
        assert u is not None
        linger = max(u.unanswered_ns or 0, u.slower_ns or 0) / 1e9 + self.settings.grace
        requests_done: float | None = None
        last_report = 0.0
        while True:
            with self.lock:
                if (
                    self.trigger is None
                    and self.watcher.tick(time.time_ns(), force=False) is not None
                ):
                    self._fired()
            if self.trigger is not None:
                break
            now = time.monotonic()
            if now >= end:
                break
            if requests is not None and not requests.is_alive():
                # Every run is done: wait only as long as the condition could still come true.
                requests_done = requests_done or now
                if now - requests_done >= linger:
                    break
            if all(st.ended.is_set() for st in states.values()):
                notes.append("every capture ended before the condition held")
                break
            if progress is not None and now - last_report >= 0.5:
                last_report = now
                progress(self._status(states, now - start))
            time.sleep(0.05)
        self.stop_requests.set()
        if self.trigger is not None:
            if progress is not None:
                progress(self._status(states, time.monotonic() - start))
            # Every point keeps recording what follows the failure (retransmissions, the RST's
            # echo at other points, the client's own reaction) for keep_after.
            _sleep(s.keep_after, states)
        self.stop_requested_ns = time.time_ns()
        if requests is not None:
            requests.join(timeout=0.5 if self.trigger is not None else s.request_timeout)
        return self._request_record()

    def _requests(self, backend: CaptureBackend) -> None:
        s = self.settings
        assert s.request is not None
        for i in range(s.repeat):
            if self.stop_requests.is_set() or self.trigger is not None:
                return
            t0 = time.time_ns()
            try:
                r = _request(self.plan, backend, s, s.request)
            except PathtraceError as e:
                r = {"argv": list(s.request), "exit_code": None, "message": e.message}
            r["started_ns"] = t0
            self.runs.append(r)
            if i + 1 < s.repeat and self.stop_requests.wait(s.interval):
                return

    def _request_record(self) -> dict[str, Any]:
        s = self.settings
        if s.request is None:
            return {"until": s.until.text if s.until else None, "wait_s": s.duration}
        if not self.runs:
            return {"argv": list(s.request), "runs": 0}
        last = self.runs[-1]
        return {
            **last,
            "runs": len(self.runs),
            "repeat": s.repeat,
            "interval_s": s.interval,
            "exit_codes": [r.get("exit_code") for r in self.runs][-100:],
        }

    def _status(self, states: Mapping[str, PointState], elapsed: float) -> dict[str, Any]:
        assert self.settings.until is not None
        with self.lock:
            connections = self.watcher.connections
        return {
            "elapsed_s": elapsed,
            "duration_s": self.settings.duration,
            "watching": self.settings.until.describe(),
            "watched_point": self.watched.name if self.watched else None,
            "connections": connections,
            "requests": len(self.runs),
            "armed": sum(1 for st in states.values() if not st.ended.is_set()),
            "points": {n: (st.sink.packets, st.sink.bytes) for n, st in states.items()},
            "trigger": self.trigger,
        }

    def finish(
        self, states: Mapping[str, PointState], outcome: str, notes: list[str]
    ) -> dict[str, Any]:
        """Cut every ring to the window kept; what happened, for the manifest's `extra`."""
        s = self.settings
        assert s.until is not None
        keep_before, keep_after = int(s.keep_before * 1e9), int(s.keep_after * 1e9)
        stopped = [st.stopped_ns for st in states.values() if st.stopped_ns is not None]
        window: tuple[int | None, int | None] = (None, None)  # interrupted or failed: all of it
        trig = self.trigger
        # Every point starts where the ring that forgot the most still holds packets: a
        # connection is then either whole at every point or cut at all of them alike (a
        # connection seen at some points only would look like a path that stops short).
        held = [h for h in (sink.oldest_ns for sink in self.sinks) if h is not None]
        common = max(held) if held else None
        if trig is not None and self.detected_ns is not None:
            start = self.window_start(trig)
            if common is not None:
                start = max(start, min(common, trig.started_ns - PROTECT_MARGIN_NS))
            window = (start, max(trig.at_ns, self.detected_ns) + keep_after)
        elif outcome == "quiet":
            last = max(stopped) if stopped else time.time_ns()
            start = last - keep_before - keep_after
            window = (max(start, common) if common is not None else start, None)
        ring: dict[str, Any] = {}
        for name, st in states.items():
            sink = st.sink
            assert isinstance(sink, RingSink)
            lost = sink.evicted_until_ns
            if outcome == "quiet" and s.discard_if_quiet:
                sink.finish(0, 0)
            else:
                sink.finish(*window)
            if (
                trig is not None
                and lost is not None
                and window[0] is not None
                and lost >= window[0]
            ):
                notes.append(
                    f"point {name}: the ring ({_mib(s.ring_bytes)}) no longer held the start "
                    "of the window; raise --ring-bytes to keep more before the trigger"
                )
            if sink.overflow_packets:
                notes.append(
                    f"point {name}: the ring ({_mib(s.ring_bytes)}) filled up with the window; "
                    f"the last {sink.overflow_packets} packets of --keep-after were not kept"
                )
            ring[name] = {
                "overflow_packets": sink.overflow_packets,
                "seen_packets": sink.seen_packets,
                "seen_bytes": sink.seen_bytes,
                "kept_packets": sink.packets,
                "kept_bytes": sink.bytes,
                "evicted_bytes": sink.evicted_bytes,
            }
        shutil.rmtree(self.run / ".ring", ignore_errors=True)
        info: dict[str, Any] = {
            "until": {
                "condition": s.until.text,
                "watching": s.until.describe(),
                "watched_point": self.watched.name if self.watched else None,
                "duration_s": s.duration,
                "ring_bytes": s.ring_bytes,
                "keep_before_s": s.keep_before,
                "keep_after_s": s.keep_after,
                "armed_ns": self.armed_ns,
                "connections_seen": self.watcher.connections,
                "window": {"start_ns": window[0], "end_ns": window[1]},
                "ring": ring,
            }
        }
        if trig is not None:
            all_stopped = max(stopped) if stopped else None
            info["trigger"] = {
                **trig.to_json(),
                "point": self.watched.name if self.watched else None,
                "detected_ns": self.detected_ns,
                "stop_requested_ns": self.stop_requested_ns,
                # From the packet's timestamp to this machine acting on it.
                "detect_latency_ms": round((self.detected_ns - trig.at_ns) / 1e6, 1)
                if self.detected_ns is not None
                else None,
                "all_stopped_ns": all_stopped,
                # Trigger to every point stopped, without the keep_after asked for.
                "stop_latency_ms": round((all_stopped - self.stop_requested_ns) / 1e6, 1)
                if all_stopped is not None and self.stop_requested_ns is not None
                else None,
            }
        return info


def _mib(n: int) -> str:
    return f"{n / 1048576:g} MiB" if n >= 1048576 else f"{n / 1024:g} KiB"


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


def _collect_pod_facts(
    plan: CapturePlan, backend: CaptureBackend, run: Path, notes: list[str]
) -> None:
    """A meshed pod's own nat table, conntrack and links, through its debug container (which
    shares the pod's network namespace), into RUN/pods/<point>/."""
    for p in plan.points:
        if p.kind != "ephemeral" or p.mesh is None:
            continue
        _save_outputs(
            backend,
            p,
            POD_FACT_COMMANDS,
            run / "pods" / p.name,
            f"pod {p.namespace}/{p.pod}",
            notes,
        )


def _collect_lb_agent_facts(
    plan: CapturePlan, backend: CaptureBackend, run: Path, notes: list[str]
) -> None:
    """A Cilium agent's Services and conntrack on each node of the path, into
    RUN/nodes/<node>/cilium-*.txt (the evidence when an eBPF load-balancer translated)."""
    for a in plan.lb_agents:
        _save_outputs(
            backend,
            a,
            LB_AGENT_FACT_COMMANDS,
            run / "nodes" / a.node,
            f"{a.namespace}/{a.pod}",
            notes,
        )


def _save_outputs(
    backend: CaptureBackend,
    target: PlannedPoint,
    commands: Mapping[str, Sequence[str]],
    directory: Path,
    who: str,
    notes: list[str],
) -> None:
    """Run each of `commands` in `target` and keep its output as `directory`/NAME (mode 0600);
    a command that fails is a note naming `who`, never an error: the capture stands without it."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, argv in commands.items():
        try:
            code, out, err, msg = backend.run(target, argv, 20.0)
        except PathtraceError as e:
            notes.append(f"{who}: {' '.join(argv)} failed: {e.message}")
            continue
        if code == 0:
            write_private(directory / name, out)
        else:
            why = err.decode("utf-8", "replace").strip() or msg or f"exit {code}"
            notes.append(f"{who}: {' '.join(argv)}: {why}")


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

"""Incident mode (`--until`): every point keeps a ring, the watched point's stream is judged
live, requests are repeated until the condition holds, and every ring is cut to the window kept
around the trigger. Never prints: progress goes to a callback.
"""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tracer.capture.backend import CaptureBackend
from tracer.capture.plan import CapturePlan, PlannedPoint
from tracer.capture.ring import RingSink
from tracer.capture.session import (
    CaptureSettings,
    PointState,
    WatchProgress,
    run_request,
    sleep_while_capturing,
)
from tracer.capture.watch import Trigger, Watcher
from tracer.errors import PathtraceError


def watched_point(plan: CapturePlan) -> PlannedPoint | None:
    """Where `--until` judges the traffic: the client pod, else the first node on the path."""
    by_name = {p.name: p for p in plan.points}
    if plan.request_point in by_name:
        return by_name[plan.request_point]
    return next((p for p in plan.points if p.role == "client"), None) or next(
        (p for p in plan.points if p.kind == "node"), plan.points[0] if plan.points else None
    )


PROTECT_MARGIN_NS = 200_000_000


class Incident:
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
            sleep_while_capturing(s.keep_after, states)
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
                r = run_request(self.plan, backend, s, s.request)
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

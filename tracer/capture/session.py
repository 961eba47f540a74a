"""What one capture run holds while it runs, and the steps both modes (one request, `--until`)
share: the settings asked for, each point's state, running the request where it belongs, and
waiting while the points capture.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tracer.capture.backend import CaptureBackend, PointStream, run_here
from tracer.capture.plan import CapturePlan, PlannedPoint
from tracer.capture.ring import DEFAULT_RING_BYTES, RingSink
from tracer.capture.watch import Until
from tracer.capture.writer import PcapSink
from tracer.errors import ClusterError


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
# packets/bytes seen per point (see `Incident._status`).
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


def run_request(
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


def sleep_while_capturing(seconds: float, states: Mapping[str, PointState]) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if all(st.ended.is_set() for st in states.values()):
            return  # every tcpdump hit -c or died: nothing left to wait for
        time.sleep(min(0.2, max(0.0, end - time.monotonic())))

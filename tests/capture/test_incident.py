"""Incident mode in the lifecycle (`--until`): scripted point streams through a fake backend.

Each point's stream sends real pcap records stamped with the real time, as tcpdump would; the
client's carries healthy connections and, when the script says so, one the server resets.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from tests.capture.test_ring import records
from tests.pcap.craft import eth, ipv4, pcap, tcp
from tracer.capture.lifecycle import run_capture
from tracer.capture.plan import CapturePlan, PlannedPoint
from tracer.capture.session import CaptureSettings
from tracer.capture.watch import parse_until

CLIENT, VIP = "10.244.1.2", "10.96.0.100"
S, A, F, R, P = 0x02, 0x10, 0x01, 0x04, 0x08
GET = b"GET / HTTP/1.1\r\n\r\n"


def _point(name: str, role: str, kind: str) -> PlannedPoint:
    return PlannedPoint(name, role, kind, "n1", "default", name, "c", "eth0", ("tcpdump",))  # type: ignore[arg-type]


PLAN = CapturePlan(
    run_id="20240102-030405-abcd",
    filter="tcp",
    points=(_point("client", "client", "ephemeral"), _point("node-n1", "node", "node")),
    ephemeral=(),
    node_pods=(),
    labels={},
    deadline_s=60,
    request_point="client",
)


def connection(port: int, reset: bool) -> list[bytes]:
    def seg(out: bool, flags: int, payload: bytes = b"") -> bytes:
        src, dst, sp, dp = (CLIENT, VIP, port, 80) if out else (VIP, CLIENT, 80, port)
        return eth(ipv4(tcp(payload, sp, dp, flags=flags), 6, src, dst))

    opening = [seg(True, S), seg(False, S | A), seg(True, A), seg(True, P | A, GET)]
    if reset:
        return [*opening, seg(False, R | A)]
    ok = b"HTTP/1.1 200 OK\r\n\r\n"
    return [*opening, seg(False, P | A, ok), seg(True, F | A), seg(False, F | A), seg(True, A)]


class Stream:
    """A tcpdump's stream: the header at once, then a connection every `every` seconds."""

    def __init__(self, fault_at: int | None, every: float = 0.02) -> None:
        self.t0 = time.monotonic()
        self.sent = 0
        self.fault_at = fault_at
        self.every = every
        self.header = True
        self.open = True

    def read(self, timeout: float = 0.5) -> tuple[bytes, bytes]:
        time.sleep(min(timeout, 0.01))
        if not self.open:
            return b"", b""
        due = int((time.monotonic() - self.t0) / self.every)
        out = []
        while self.sent < due:
            port = 30000 + self.sent
            out += connection(port, reset=self.sent == self.fault_at)
            self.sent += 1
        data = pcap([], 1) if self.header else b""
        err = b"listening on eth0\n" if self.header else b""
        self.header = False
        now = time.time_ns()
        body = pcap(out, 1)[24:] if out else b""
        # Stamp with the real time, as tcpdump does.
        return data + _restamp(body, now), err

    def is_open(self) -> bool:
        return self.open

    def status(self) -> tuple[int | None, str]:
        return 0, ""

    def close(self) -> None:
        self.open = False


def _restamp(body: bytes, now_ns: int) -> bytes:
    out, off = bytearray(body), 0
    while off < len(out):
        out[off : off + 8] = (now_ns // 10**9).to_bytes(4, "little") + (
            (now_ns % 10**9) // 1000
        ).to_bytes(4, "little")
        off += 16 + int.from_bytes(out[off + 8 : off + 12], "little")
    return bytes(out)


class Backend:
    def __init__(self, fault_at: int | None) -> None:
        self.fault_at = fault_at
        self.streams: dict[str, Stream] = {}
        self.stopped: list[str] = []
        self.runs: list[Sequence[str]] = []
        self.cleaned = False

    def setup(self, plan: CapturePlan) -> None:
        pass

    def start(self, point: PlannedPoint) -> Stream:
        self.streams[point.name] = Stream(self.fault_at)
        return self.streams[point.name]

    def stop(self, point: PlannedPoint) -> None:
        self.stopped.append(point.name)
        self.streams[point.name].close()

    def run(
        self, point: PlannedPoint, argv: Sequence[str], timeout: float
    ) -> tuple[int | None, bytes, bytes, str]:
        self.runs.append(argv)
        return 0, b"hello\n", b"", ""

    def cleanup(self, plan: CapturePlan) -> list[str]:
        self.cleaned = True
        return []


def settings(**kw: Any) -> CaptureSettings:
    base: dict[str, Any] = {
        "until": parse_until("failed"),
        "duration": 20.0,
        "keep_before": 0.3,
        "keep_after": 0.4,
        "ring_bytes": 1 << 20,
        "collect_facts": False,
    }
    return CaptureSettings(**{**base, **kw})


def ports(path: Path) -> list[int]:
    """The client port of every TCP record (Ethernet/IPv4/TCP as crafted above)."""
    out = []
    for _, frame in records(path):
        sport, dport = int.from_bytes(frame[34:36], "big"), int.from_bytes(frame[36:38], "big")
        out.append(dport if sport == 80 else sport)
    return out


def test_the_reset_fires_and_every_point_keeps_the_window(tmp_path: Path) -> None:
    backend = Backend(fault_at=40)  # the 41st connection, 0.8 s after arming
    t0 = time.monotonic()
    m = run_capture(PLAN, backend, tmp_path, settings())
    took = time.monotonic() - t0
    assert took < 15, "the capture did not stop after the trigger"
    trig = m.extra["trigger"]
    assert m.extra["outcome"] == "triggered"
    assert (trig["condition"], trig["outcome"]) == ("reset", "reset")
    assert trig["connection"]["client"] == f"{CLIENT}:30040"
    assert trig["point"] == "client" and "[R.]" in trig["packet"]
    assert sorted(backend.stopped) == ["client", "node-n1"] and backend.cleaned
    assert trig["stop_requested_ns"] - trig["detected_ns"] >= 0.4e9  # --keep-after honoured
    window = m.extra["until"]["window"]
    assert window["start_ns"] <= trig["connection"]["started_ns"]
    for p in m.points:
        kept = records(tmp_path / p.file)
        assert p.packets == len(kept) > 0
        assert 30040 in ports(tmp_path / p.file), p.name  # the failing request, everywhere
        assert all(window["start_ns"] <= t <= window["end_ns"] for t, _ in kept)
        ring = m.extra["until"]["ring"][p.name]
        assert ring["kept_packets"] == p.packets <= ring["seen_packets"]
    # Connections long before the window were let go: the run is not the whole wait.
    assert min(ports(tmp_path / "points" / "client.pcap")) > 30000
    assert not (tmp_path / ".ring").exists()


def test_quiet_keeps_the_last_window_and_says_so(tmp_path: Path) -> None:
    backend = Backend(fault_at=None)
    m = run_capture(PLAN, backend, tmp_path, settings(duration=1.5))
    assert m.extra["outcome"] == "quiet" and "trigger" not in m.extra
    assert m.extra["until"]["connections_seen"] > 20
    for p in m.points:
        kept = records(tmp_path / p.file)
        seen = m.extra["until"]["ring"][p.name]["seen_packets"]
        assert 0 < len(kept) < seen  # the last 0.7 s of the 1.5 s
        assert max(t for t, _ in kept) - min(t for t, _ in kept) <= 0.75e9
    assert backend.cleaned


def test_discard_if_quiet_keeps_no_packets(tmp_path: Path) -> None:
    m = run_capture(PLAN, Backend(None), tmp_path, settings(duration=0.5, discard_if_quiet=True))
    assert m.extra["outcome"] == "quiet"
    assert all(p.packets == 0 for p in m.points)


def test_ctrl_c_keeps_what_the_rings_hold(tmp_path: Path) -> None:
    backend = Backend(fault_at=None)
    armed = threading.Event()

    def progress(status: Any) -> None:
        armed.set()
        if status["elapsed_s"] > 0.6:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_capture(PLAN, backend, tmp_path, settings(), watch_progress=progress)
    assert armed.is_set() and backend.cleaned
    import json

    m = json.loads((tmp_path / "manifest.json").read_text())
    assert m["extra"]["outcome"] == "interrupted"
    for p in m["points"]:
        assert len(records(tmp_path / p["file"])) == p["packets"] > 0
        assert p["packets"] == m["extra"]["until"]["ring"][p["name"]]["seen_packets"]


def test_repeat_runs_the_request_until_it_fires_or_runs_out(tmp_path: Path) -> None:
    backend = Backend(fault_at=None)
    s = settings(
        request=("curl", "-s", "http://web/"),
        repeat=4,
        interval=0.05,
        until=parse_until("reset"),
    )
    m = run_capture(PLAN, backend, tmp_path, s)
    assert len(backend.runs) == 4 and m.request["runs"] == 4
    assert m.request["exit_codes"] == [0, 0, 0, 0] and m.extra["outcome"] == "quiet"
    fired = Backend(fault_at=10)
    m = run_capture(PLAN, fired, tmp_path / "b", settings(**{**s.__dict__, "repeat": 10_000}))
    assert m.extra["outcome"] == "triggered" and 0 < m.request["runs"] < 10_000

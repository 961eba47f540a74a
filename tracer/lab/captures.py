"""A scenario run's captures: one tcpdump per point, in the point's namespace, all at once.

`start_captures` returns once every tcpdump listens (or stops those it started and raises);
`stop_captures` ends them and reads their counts. Files are made 0600 before tcpdump writes them.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from tracer.errors import LabError
from tracer.lab.runner import Runner
from tracer.lab.scenarios import Point, Scenario
from tracer.model import CapturePoint

SNAPLEN = 256


@dataclass
class Capture:
    """One point's tcpdump: where it writes, since when, and what it counted once stopped."""

    point: Point
    file: Path
    proc: subprocess.Popen[bytes]
    errfile: Path
    started_ns: int
    stopped_ns: int | None = None
    packets: int | None = None
    dropped: int | None = None


_CAPTURED = re.compile(r"(\d+) packets? captured")
_DROPPED = re.compile(r"(\d+) packets? dropped by kernel")


def _bpf() -> list[str]:
    return ["ip", "or", "ip6", "or", "arp"]


def start_captures(
    runner: Runner, sc: Scenario, run_dir: Path, timeout: float = 10.0
) -> list[Capture]:
    points_dir = run_dir / "points"
    points_dir.mkdir(parents=True, exist_ok=True)
    caps: list[Capture] = []
    try:
        for pt in sc.points:
            f = points_dir / f"{pt.name}.pcap"
            # Created 0600 first: tcpdump truncates an existing file and keeps its mode.
            os.close(os.open(f, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600))
            err = run_dir / f".{pt.name}.tcpdump.log"
            # Nanosecond stamps: at microseconds a pod's sighting and its node's veth sighting
            # of the same packet often share a stamp, and the path order between them is lost.
            argv = [
                "ip", "netns", "exec", pt.netns, "tcpdump", "--immediate-mode", "-U",
                "--time-stamp-precision=nano",
                "-Z", "root", "-n", "-i", pt.interface, "-s", str(SNAPLEN), "-w", str(f), *_bpf(),
            ]  # fmt: skip
            with open(err, "wb") as ef:
                proc = runner.spawn(argv, stdout=subprocess.DEVNULL, stderr=ef)
            caps.append(Capture(pt, f, proc, err, time.time_ns()))
        deadline = time.monotonic() + timeout
        for cap in caps:
            while "listening on" not in cap.errfile.read_text(errors="replace"):
                if cap.proc.poll() is not None:
                    raise LabError(
                        f"tcpdump at {cap.point.name} exited: "
                        f"{cap.errfile.read_text(errors='replace').strip()[-300:]}"
                    )
                if time.monotonic() > deadline:
                    raise LabError(
                        f"tcpdump at {cap.point.name} did not start within {timeout:g} s"
                    )
                time.sleep(0.02)
    except BaseException:
        stop_captures(caps)
        raise
    return caps


def stop_captures(caps: list[Capture]) -> None:
    for cap in caps:
        if cap.proc.poll() is None:
            cap.proc.send_signal(signal.SIGINT)
    for cap in caps:
        try:
            cap.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            cap.proc.kill()
            cap.proc.wait()
        cap.stopped_ns = time.time_ns()
        text = cap.errfile.read_text(errors="replace") if cap.errfile.exists() else ""
        m = _CAPTURED.search(text)
        cap.packets = int(m.group(1)) if m else None
        m = _DROPPED.search(text)
        cap.dropped = int(m.group(1)) if m else None
        cap.errfile.unlink(missing_ok=True)


def capture_point(cap: Capture) -> CapturePoint:
    """The run directory's record of one point's capture."""
    pt = cap.point
    return CapturePoint(
        name=pt.name,
        role=pt.role,
        file=f"points/{pt.name}.pcap",
        node=pt.node,
        pod=pt.pod,
        namespace=pt.namespace,
        interface=pt.interface,
        started_ns=cap.started_ns,
        stopped_ns=cap.stopped_ns,
        packets=cap.packets,
        dropped=cap.dropped,
    )

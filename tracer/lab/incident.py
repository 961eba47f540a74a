"""The lab's intermittent fault and background traffic, for incident mode (`capture --until`).

`set_fault` writes the file a lab HTTP backend reads before each request (see tracer.lab.httpd):
one request in N is then answered with a TCP RST. `start_traffic` runs tracer.lab.traffic in a
pod's namespace (`ip netns exec`, which execs: the PID held is the program's), recorded in the
lab state under `traffic` so that `stop_traffic` and `lab down` end it. Nothing here touches
anything outside the lab's namespaces and state directory.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from tracer.errors import LabError, UsageError
from tracer.lab.runner import Runner, SubprocessRunner, process_alive
from tracer.lab.topology import STATE_DIR, read_state, write_state

# The lab pods that run tracer.lab.httpd, and so can carry the fault.
FAULT_PODS = ("web-a", "web-b", "slow")
TRAFFIC_LOG = "traffic.log"


def fault_file(state_dir: Path, pod: str) -> Path:
    return state_dir / "faults" / f"{pod}.json"


def set_fault(pod: str, reset_every: int | None, state_dir: Path = STATE_DIR) -> Path:
    """Reset one request in `reset_every` at `pod` (None: no fault); returns the file written."""
    if pod not in FAULT_PODS:
        raise UsageError(f"no fault for {pod!r}: the lab's HTTP pods are {', '.join(FAULT_PODS)}")
    path = fault_file(state_dir, pod)
    if reset_every is None:
        path.unlink(missing_ok=True)
        return path
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"reset_every": reset_every}))
    os.replace(tmp, path)  # the server never reads half a file
    return path


def resets_logged(pod: str, state_dir: Path = STATE_DIR) -> list[tuple[str, int]]:
    """(client address, port) of every request `pod` answered with a reset, from its log."""
    log = state_dir / "logs" / f"{pod}.log"
    out = []
    for line in log.read_text(errors="replace").splitlines() if log.exists() else []:
        words = line.split()
        if len(words) >= 2 and words[0] == "reset":
            addr, _, port = words[1].rpartition(":")
            out.append((addr, int(port)))
    return out


def start_traffic(
    netns: str,
    url: str,
    interval: float,
    runner: Runner | None = None,
    state_dir: Path = STATE_DIR,
) -> dict[str, Any]:
    """Start the generator in `netns`; refuses a second one."""
    runner = runner or SubprocessRunner()
    state = read_state()
    if state is None:
        raise LabError("the lab is not up", hint="run `pathtrace lab up` first")
    old = state.get("traffic")
    if old and process_alive(int(old.get("pid", 0))):
        raise LabError(
            f"background traffic is already running (pid {old['pid']}, to {old['url']})",
            hint="`pathtrace lab traffic stop` first",
        )
    logs = state_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    log = logs / TRAFFIC_LOG
    argv = [sys.executable, "-m", "tracer.lab.traffic", "--url", url, "--interval", str(interval)]
    with open(log, "wb") as out, open(logs / "traffic.err", "wb") as err:
        proc = runner.spawn(["ip", "netns", "exec", netns, *argv], stdout=out, stderr=err)
    time.sleep(0.2)
    if proc.poll() is not None:
        text = (logs / "traffic.err").read_text(errors="replace")[-400:]
        raise LabError(f"the traffic generator exited at start (exit {proc.returncode}): {text}")
    info = {"pid": proc.pid, "netns": netns, "url": url, "interval_s": interval, "log": str(log)}
    state["traffic"] = info
    write_state(state)
    return info


def stop_traffic() -> dict[str, Any] | None:
    """End the generator recorded in the state; what it was (None: none was running)."""
    state = read_state()
    info = (state or {}).get("traffic")
    if not info:
        return None
    pid = int(info.get("pid", 0))
    if process_alive(pid):
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 5
        while process_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if process_alive(pid):
            os.kill(pid, signal.SIGKILL)
    try:
        os.waitpid(pid, os.WNOHANG)  # our own child when started by this process
    except ChildProcessError:
        pass
    assert state is not None
    state.pop("traffic", None)
    write_state(state)
    return dict(info)


def traffic_log(path: str | Path) -> list[tuple[int, int, str, str]]:
    """(time ns, local port, outcome, detail) of every request the generator logged."""
    out = []
    for line in Path(path).read_text(errors="replace").splitlines():
        words = line.split(" ", 3)
        if len(words) >= 3 and words[0].isdigit() and words[1].isdigit():
            out.append((int(words[0]), int(words[1]), words[2], words[3] if len(words) > 3 else ""))
    return out

"""The lab's local Kubernetes API: start it, find it, stop it, and time a capture through it.

`run_api` serves the running lab (tracer.apiserver.lab.lab_cluster_state, commands through
`ip netns exec`) on 127.0.0.1 in this process until SIGINT/SIGTERM, and records itself in the
lab's state file (`api`: pid, port, url, kubeconfig). `start_api` runs the same thing detached
(`python -m tracer.lab.api`), so that `pathtrace lab up --api` returns; `stop_api` ends it by the
recorded PID and by its command line (so it works after a kill -9 of whatever started it) and
removes its kubeconfig. `measure_capture_arming` times a `pathtrace capture` through the API.

Must not: listen on anything but loopback, leave the API process or its kubeconfig behind after
`stop_api`, or signal a process that is not this lab's API (a PID is trusted only with its
command line and this network namespace).
"""

from __future__ import annotations

import argparse
import os
import signal
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tracer.errors import LabError
from tracer.lab.runner import process_alive
from tracer.rundir import write_private

Log = Callable[[str], None]

MODULE = "tracer.lab.api"
START_TIMEOUT_S = 15.0
STOP_GRACE_S = 3.0


def _quiet(_: str) -> None:
    pass


def default_kubeconfig() -> Path:
    from tracer.lab.topology import STATE_DIR

    return STATE_DIR / "kubeconfig"


def _log_path() -> Path:
    from tracer.lab.topology import STATE_DIR

    return STATE_DIR / "logs" / "api.log"


@dataclass(frozen=True)
class ApiInfo:
    """A running lab API as its state record says: who serves it, where, with which kubeconfig."""

    pid: int
    port: int
    url: str
    kubeconfig: str
    started: float

    def to_json(self) -> dict[str, Any]:
        return {
            "pid": self.pid,
            "port": self.port,
            "url": self.url,
            "kubeconfig": self.kubeconfig,
            "started": self.started,
        }

    @staticmethod
    def from_json(data: Any) -> ApiInfo | None:
        if not isinstance(data, dict):
            return None
        try:
            return ApiInfo(
                pid=int(data["pid"]),
                port=int(data["port"]),
                url=str(data["url"]),
                kubeconfig=str(data["kubeconfig"]),
                started=float(data.get("started", 0.0)),
            )
        except (KeyError, TypeError, ValueError):
            return None


# ---------------------------------------------------------------------------------------------
# Finding the process: a PID counts only when its command line is the API's


def _cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [a.decode("utf-8", "replace") for a in raw.split(b"\0") if a]


def is_api_cmdline(argv: Sequence[str]) -> bool:
    """True for `python -m tracer.lab.api ...` (how start_api runs it) and for
    `pathtrace lab api` serving in the foreground."""
    pairs = list(zip(argv, argv[1:], strict=False))
    if ("-m", MODULE) in pairs:
        return True
    return ("lab", "api") in pairs and any(os.path.basename(a) == "pathtrace" for a in argv[:3])


def same_netns(pid: int) -> bool:
    """True when `pid` lives in this process's network namespace: an API elsewhere listens on
    another 127.0.0.1 and belongs to another lab (another container or isolated test run)."""
    try:
        return os.stat(f"/proc/{pid}/ns/net").st_ino == os.stat("/proc/self/ns/net").st_ino
    except OSError:
        return False


def _is_api_pid(pid: int) -> bool:
    if pid <= 0:
        return False
    if pid == os.getpid():
        return True
    return is_api_cmdline(_cmdline(pid)) and same_netns(pid)


def find_api_pids() -> list[int]:
    """Every process running the lab API detached (by command line), the recorded one first."""
    recorded = api_info()
    pids: list[int] = []
    if recorded is not None and recorded.pid != os.getpid() and _is_api_pid(recorded.pid):
        pids.append(recorded.pid)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        if pid != os.getpid() and pid not in pids and _is_api_pid(pid):
            pids.append(pid)
    return pids


# ---------------------------------------------------------------------------------------------
# The state record


def api_info() -> ApiInfo | None:
    """The API recorded in the lab's state file (running or not), or None."""
    from tracer.lab.topology import read_state

    return ApiInfo.from_json((read_state() or {}).get("api"))


def api_status() -> dict[str, Any]:
    """What `pathtrace lab status` shows: is an API running, where, with which kubeconfig."""
    info = api_info()
    running = info is not None and process_alive(info.pid) and _is_api_pid(info.pid)
    others = [p for p in find_api_pids() if info is None or p != info.pid]
    out: dict[str, Any] = {"running": running, "stray_pids": others}
    if info is not None:
        out.update(info.to_json())
    return out


def _record(info: ApiInfo | None, *, only_pid: int | None = None) -> None:
    """Write (or, with None, remove) the `api` record; `only_pid` removes only our own."""
    from tracer.lab.topology import read_state, write_state

    state = read_state()
    if state is None:
        return  # the lab went down under us: nothing to record into
    if info is None:
        current = ApiInfo.from_json(state.get("api"))
        if current is None or (only_pid is not None and current.pid != only_pid):
            return
        state.pop("api", None)
    else:
        state["api"] = info.to_json()
    write_state(state)


# ---------------------------------------------------------------------------------------------
# Serving


@dataclass
class LabServer:
    """The stand-in serving the lab in this process, and the kubeconfig copied for users."""

    server: Any  # tracer.apiserver.server.Server
    kubeconfig: Path

    @property
    def url(self) -> str:
        return str(self.server.url)

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def close(self) -> None:
        self.server.close()
        self.kubeconfig.unlink(missing_ok=True)


def open_server(port: int = 0, kubeconfig_out: str | os.PathLike[str] | None = None) -> LabServer:
    """Start the stand-in for the running lab in this process (the caller closes it).

    Its kubeconfig (context `pathtrace-lab`, namespace `default`, a random bearer token) is
    copied to `kubeconfig_out` (default /run/pathtrace-lab/kubeconfig), mode 0600.
    """
    from tracer.apiserver import NetnsExecBackend
    from tracer.apiserver.lab import lab_cluster_state
    from tracer.apiserver.server import Server
    from tracer.lab.topology import STATE_DIR

    state = lab_cluster_state()
    try:
        # Its keys and kubeconfig in the lab's state directory: `lab down` removes them, even
        # after a kill -9 of the API.
        server = Server(state, NetnsExecBackend(), port=port, workdir=STATE_DIR / "api")
    except OSError as e:
        raise LabError(
            f"cannot listen on 127.0.0.1:{port}: {e.strerror or e}",
            hint="pick another --api-port, or 0 for a free one",
        ) from None
    out = Path(kubeconfig_out) if kubeconfig_out else default_kubeconfig()
    try:
        write_private(out, server.kubeconfig_path.read_text())
    except OSError as e:
        server.close()
        raise LabError(f"cannot write the kubeconfig {out}: {e.strerror or e}") from None
    return LabServer(server, out.absolute())


def run_api(
    port: int = 0,
    kubeconfig_out: str | os.PathLike[str] | None = None,
    *,
    ready: Callable[[ApiInfo], None] | None = None,
    stop: threading.Event | None = None,
) -> ApiInfo:
    """Serve the lab until SIGINT/SIGTERM/SIGHUP (or `stop` is set); clean up and return.

    Refuses when another lab API is already running. Must run in the main thread when it is to
    catch signals.
    """
    running = [p for p in find_api_pids() if p != os.getpid()]
    current = api_info()
    if current is not None and current.pid != os.getpid() and process_alive(current.pid):
        running = sorted(set(running) | {current.pid})
    if running:
        raise LabError(
            f"the lab API is already running (pid {', '.join(map(str, running))})",
            hint="use its kubeconfig (`pathtrace lab status`), or `pathtrace lab down`",
        )
    stop = stop or threading.Event()
    previous: dict[signal.Signals, Any] = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            previous[sig] = signal.signal(sig, lambda *_: stop.set())
    server: LabServer | None = None
    try:
        server = open_server(port, kubeconfig_out)
        info = ApiInfo(os.getpid(), server.port, server.url, str(server.kubeconfig), time.time())
        _record(info)
        if ready is not None:
            ready(info)
        while not stop.wait(0.5):
            pass
        return info
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if server is not None:
            server.close()
        _record(None, only_pid=os.getpid())


def start_api(
    port: int = 0,
    kubeconfig_out: str | os.PathLike[str] | None = None,
    *,
    timeout: float = START_TIMEOUT_S,
    log: Log = _quiet,
) -> ApiInfo:
    """Start the lab API detached (`python -m tracer.lab.api`); return once it serves."""
    from tracer.lab.lab import require_up

    require_up()
    current = api_info()
    if current is not None and process_alive(current.pid) and _is_api_pid(current.pid):
        raise LabError(
            f"the lab API is already running (pid {current.pid}, kubeconfig {current.kubeconfig})",
            hint="`pathtrace lab down` removes the lab and its API",
        )
    out = Path(kubeconfig_out) if kubeconfig_out else default_kubeconfig()
    log_path = _log_path()
    log_path.parent.mkdir(parents=True, exist_ok=True)
    argv = [
        sys.executable, "-m", MODULE, "--port", str(port), "--kubeconfig-out", str(out.absolute()),
    ]  # fmt: skip
    with open(log_path, "wb") as logf:
        # Its own session: a Ctrl-C or hang-up of the starting terminal must not stop it.
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=logf,
            stderr=logf,
            start_new_session=True,
            cwd="/",
        )
    log(f"starting the API (pid {proc.pid})")
    deadline = time.monotonic() + timeout
    while True:
        info = api_info()
        if info is not None and info.pid == proc.pid:
            log(f"API serving on {info.url}; kubeconfig {info.kubeconfig}")
            return info
        if proc.poll() is not None:
            text = log_path.read_text(errors="replace").strip()
            raise LabError(f"the lab API exited at start (exit {proc.returncode}): {text[-500:]}")
        if time.monotonic() > deadline:
            _end(proc.pid)
            proc.wait()
            raise LabError(f"the lab API did not start within {timeout:g} s (log: {log_path})")
        time.sleep(0.05)


def _end(pid: int, grace: float = STOP_GRACE_S) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if not process_alive(pid):
            return
        time.sleep(0.05)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace
    while process_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)


def stop_api(log: Log = _quiet) -> list[int]:
    """End every lab API process and remove its kubeconfig and state record; return their PIDs.

    Works without a state file (by command line) and after a kill -9 of its parent. An API
    served by this very process (in-process use) is left to its owner.
    """
    info = api_info()
    pids = find_api_pids()
    for pid in pids:
        log(f"stopping the lab API (pid {pid})")
        _end(pid)
    for path in {default_kubeconfig(), *([Path(info.kubeconfig)] if info else [])}:
        if path.exists():
            path.unlink(missing_ok=True)
            log(f"removed {path}")
    _record(None)
    return pids


# ---------------------------------------------------------------------------------------------
# Measuring a capture through the API


def _first_packet_ns(path: Path) -> int | None:
    """The first record's timestamp of a classic pcap file (µs or ns resolution), or None."""
    try:
        with open(path, "rb") as f:
            head = f.read(24 + 16)
    except OSError:
        return None
    if len(head) < 40:
        return None
    magic = head[:4]
    for endian, us_magic, ns_magic in (
        ("<", 0xA1B2C3D4, 0xA1B23C4D),
        (">", 0xA1B2C3D4, 0xA1B23C4D),
    ):
        (m,) = struct.unpack(endian + "I", magic)
        if m in (us_magic, ns_magic):
            sec, frac = struct.unpack(endian + "II", head[24:32])
            return sec * 1_000_000_000 + (frac if m == ns_magic else frac * 1000)
    return None


def measure_capture_arming(
    kubeconfig: str | os.PathLike[str],
    run_dir: str | os.PathLike[str],
    *,
    source: str = "pod/client",
    to: str = "svc/web",
    request: str = "curl -s http://web/",
) -> dict[str, Any]:
    """Run `pathtrace capture` in-process against the lab API; time the arming of its points.

    Returns `arm_s` (command start to the last point listening), `arm_s_by_point`,
    `arm_spread_ms` (first to last point listening), the points' first-packet times relative to
    the earliest (`first_packet_offset_ms`) and their spread (`first_packet_spread_ms`),
    `total_s`, `exit_code`, the number of `points` and each point's `packets`. The command start
    includes importing the kubernetes client, as a user's `pathtrace capture` pays it.
    """
    import json

    from click.testing import CliRunner

    from tracer.cli import cli

    run = Path(run_dir)
    args = [
        "capture", "--kubeconfig", str(kubeconfig), "--from", source, "--to", to,
        "--request", request, "-o", str(run), "--no-analyze",
    ]  # fmt: skip
    t0 = time.time_ns()
    result = CliRunner().invoke(cli, args)
    total = (time.time_ns() - t0) / 1e9
    manifest_path = run / "manifest.json"
    if not manifest_path.exists():
        raise LabError(
            f"the capture wrote no manifest (exit {result.exit_code}): {result.output[-500:]}"
        )
    manifest = json.loads(manifest_path.read_text())
    armed = {
        p["name"]: (p["started_ns"] - t0) / 1e9 for p in manifest["points"] if p.get("started_ns")
    }
    firsts = {p["name"]: _first_packet_ns(run / p["file"]) for p in manifest["points"]}
    have = {k: v for k, v in firsts.items() if v is not None}
    base = min(have.values()) if have else 0
    return {
        "exit_code": result.exit_code,
        "points": len(manifest["points"]),
        "total_s": round(total, 3),
        "arm_s": round(max(armed.values()), 3) if armed else None,
        "arm_s_by_point": {k: round(v, 3) for k, v in armed.items()},
        # How far apart the points started listening: the window in which only some capture.
        "arm_spread_ms": (
            round((max(armed.values()) - min(armed.values())) * 1e3, 3) if armed else None
        ),
        "first_packet_offset_ms": {k: round((v - base) / 1e6, 3) for k, v in have.items()},
        "first_packet_spread_ms": (round((max(have.values()) - base) / 1e6, 3) if have else None),
        "packets": {p["name"]: p.get("packets") for p in manifest["points"]},
    }


# ---------------------------------------------------------------------------------------------
# `python -m tracer.lab.api`: the detached server start_api runs


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog=f"python -m {MODULE}", description="Serve the running lab's Kubernetes API."
    )
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--kubeconfig-out", default=None)
    args = parser.parse_args(argv)

    def ready(info: ApiInfo) -> None:
        sys.stderr.write(f"serving the lab API on {info.url}; kubeconfig {info.kubeconfig}\n")
        sys.stderr.flush()

    try:
        run_api(args.port, args.kubeconfig_out, ready=ready)
    except LabError as e:
        sys.stderr.write(f"error: {e.message}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

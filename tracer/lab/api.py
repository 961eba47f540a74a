"""The lab's local Kubernetes API: start it, find it, stop it.

`run_api` serves the running lab (tracer.lab.clusterstate.lab_cluster_state, commands through
`ip netns exec`) on 127.0.0.1 in this process until SIGINT/SIGTERM, and records itself in the
lab's state file (`api`: pid, port, url, kubeconfig). `start_api` runs the same thing detached
(`python -m tracer.lab.api`), so that `pathtrace lab up --api` returns; `stop_api` ends it by the
recorded PID and by its command line (so it works after a kill -9 of whatever started it) and
removes its kubeconfig.

Must not: listen on anything but loopback, leave the API process or its kubeconfig behind after
`stop_api`, or signal a process that is not this lab's API (a PID is trusted only with its
command line and this network namespace).
"""

from __future__ import annotations

import argparse
import os
import signal
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
from tracer.lab.topology import require_up
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
    from tracer.apiserver.server import Server
    from tracer.lab.clusterstate import lab_cluster_state
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

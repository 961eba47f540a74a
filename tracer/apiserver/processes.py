"""The containers' processes: started through the ExecBackend, their output kept as the pod's log.

A container's main process (a pod's `command`, an ephemeral container's) is watched: when it
ends, the container's other processes end with it (as the runtime tears a container down) and its
status says so, with an Event. Its stdout and stderr are kept (the last `LOG_LIMIT` bytes) for
`pods/log`. Exec'd processes are the exec stream's to pump. No HTTP here.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from dataclasses import dataclass, field

from tracer.apiserver.state import ExecBackend, ExecTarget
from tracer.apiserver.store import JSON, Store

LOG_LIMIT = 1 << 20


@dataclass
class Proc:
    popen: subprocess.Popen[bytes]
    namespace: str
    pod: str
    container: str
    argv: tuple[str, ...]
    main: bool = False


@dataclass
class ContainerLog:
    data: bytearray = field(default_factory=bytearray)
    done: bool = False


def terminate(popen: subprocess.Popen[bytes]) -> None:
    """SIGTERM the process group, SIGKILL after 2 s; reaps it."""
    if popen.poll() is not None:
        return
    try:
        os.killpg(popen.pid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        popen.wait(timeout=2)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(popen.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        popen.wait(timeout=2)


class Processes:
    def __init__(self, store: Store, backend: ExecBackend) -> None:
        self.store = store
        self.backend = backend
        self.procs: list[Proc] = []
        self.logs: dict[tuple[str, str, str], ContainerLog] = {}
        self.timers: list[threading.Timer] = []

    def start(
        self, namespace: str, pod: str, container: str, argv: list[str], *, main: bool = False
    ) -> subprocess.Popen[bytes]:
        store = self.store
        p = store.get("pods", (namespace, pod))
        if p is None:
            raise FileNotFoundError(f"pod {namespace}/{pod} is gone")
        node = p["spec"].get("nodeName")
        if p["spec"].get("hostNetwork"):
            netns = store.node_netns.get(node)
        else:
            netns = store.netns.get((namespace, pod))
        target = ExecTarget(
            netns=netns, namespace=namespace, pod=pod, container=container, node=node
        )
        popen = self.backend.start(target, argv)
        proc = Proc(popen, namespace, pod, container, tuple(argv), main)
        with store.lock:
            self.procs.append(proc)
            if main:
                self.logs[(namespace, pod, container)] = ContainerLog()
        if main:
            if popen.stdin is not None:
                popen.stdin.close()  # a container without `stdin: true` reads EOF
            threading.Thread(target=self._watch_main, args=(proc,), daemon=True).start()
        return popen

    def _collect(self, proc: Proc, log: ContainerLog) -> None:
        streams = [s for s in (proc.popen.stdout, proc.popen.stderr) if s is not None]

        def pump(stream: object) -> None:
            read = getattr(stream, "read1", None) or stream.read  # type: ignore[attr-defined]
            while True:
                chunk = read(32768)
                if not chunk:
                    return
                with self.store.lock:
                    log.data += chunk
                    if len(log.data) > LOG_LIMIT:
                        del log.data[: len(log.data) - LOG_LIMIT]

        threads = [threading.Thread(target=pump, args=(s,), daemon=True) for s in streams]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    def _watch_main(self, proc: Proc) -> None:
        log = self.logs[(proc.namespace, proc.pod, proc.container)]
        self._collect(proc, log)
        # A container's processes die with its main process, as the runtime tears it down.
        proc.popen.wait()
        with self.store.lock:
            log.done = True
        self.kill_container(proc.namespace, proc.pod, proc.container)
        code = proc.popen.returncode
        exit_code = code if code >= 0 else 128 - code
        reason = "Completed" if code == 0 else "Error"

        def terminated(p: JSON) -> None:
            for key in ("containerStatuses", "ephemeralContainerStatuses"):
                for cs in p["status"].get(key) or []:
                    if cs["name"] == proc.container:
                        cs["state"] = {"terminated": {"exitCode": exit_code, "reason": reason}}
                        cs["ready"] = False
                        cs["started"] = False

        pod = self.store.update("pods", (proc.namespace, proc.pod), terminated)
        if pod is not None and not pod["metadata"].get("deletionTimestamp"):
            self.store.record_event(
                pod,
                "Died" if code else "Completed",
                f"Container {proc.container} exited with code {exit_code}",
                host=pod["spec"].get("nodeName") or "",
                type_="Normal" if code == 0 else "Warning",
                field_path=_field_path(pod, proc.container),
            )

    def kill_container(self, namespace: str, pod: str, container: str | None) -> None:
        with self.store.lock:
            procs = [
                p
                for p in self.procs
                if p.namespace == namespace
                and p.pod == pod
                and (container is None or p.container == container)
            ]
        for p in procs:
            terminate(p.popen)

    def running(self) -> list[tuple[str, str, str, tuple[str, ...]]]:
        with self.store.lock:
            return [
                (p.namespace, p.pod, p.container, p.argv)
                for p in self.procs
                if p.popen.poll() is None
            ]

    def pkill(self, namespace: str, pod: str, container: str, argv: list[str]) -> int:
        """`pkill [-SIG] [-x] NAME` as it behaves inside a container's PID namespace."""
        sig = signal.SIGTERM
        names = []
        for a in argv[1:]:
            if a in ("-x", "-f", "-e"):
                continue
            if a.startswith("-"):
                s = a[1:]
                sig = (
                    signal.Signals(int(s))
                    if s.isdigit()
                    else signal.Signals[s if s.startswith("SIG") else "SIG" + s]
                )
            else:
                names.append(a)
        hit = 0
        with self.store.lock:
            procs = [
                p
                for p in self.procs
                if p.namespace == namespace and p.pod == pod and p.container == container
            ]
        for p in procs:
            if p.popen.poll() is None and os.path.basename(p.argv[0]) in names:
                try:
                    os.killpg(p.popen.pid, sig)
                    hit += 1
                except ProcessLookupError:
                    pass
        return 0 if hit else 1

    def schedule_deadline(self, namespace: str, pod: str, seconds: float) -> None:
        def expire() -> None:
            self.kill_container(namespace, pod, None)

            def failed(p: JSON) -> None:
                p["status"]["phase"] = "Failed"
                p["status"]["reason"] = "DeadlineExceeded"

            obj = self.store.update("pods", (namespace, pod), failed)
            if obj is not None:
                self.store.record_event(
                    obj,
                    "DeadlineExceeded",
                    "Pod was active on the node longer than the specified deadline",
                    type_="Warning",
                    host=obj["spec"].get("nodeName") or "",
                )

        t = threading.Timer(seconds, expire)
        t.daemon = True
        self.timers.append(t)
        t.start()

    def close(self) -> None:
        for t in self.timers:
            t.cancel()
        with self.store.lock:
            procs = list(self.procs)
        for p in procs:
            terminate(p.popen)


def _field_path(pod: JSON, container: str) -> str:
    for key in ("containers", "ephemeralContainers"):
        if any(c.get("name") == container for c in pod["spec"].get(key) or []):
            return f"spec.{key}{{{container}}}"
    return ""

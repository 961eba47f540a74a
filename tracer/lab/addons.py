"""What a scenario adds to the lab's data plane for the length of its run, and removes after: a
meshed pod's istio-init rules and sidecar proxy, and the socket load-balancer (a cgroup with its
BPF programs) that serves Services instead of kube-proxy.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tracer.lab import mesh, sockbpf
from tracer.lab.runner import Runner
from tracer.lab.services import socket_lb_services
from tracer.lab.topology import STATE_DIR, Topology, write_state
from tracer.lab.workloads import Workload, start_workload

Log = Callable[[str], None]


@dataclass
class Sidecar:
    """A meshed pod's sidecar proxy: its namespace, its process and its connection log."""

    pod: str
    netns: str
    pid: int
    log: Path


def start_sidecar(runner: Runner, topo: Topology, pod: str, started: list[Sidecar]) -> Sidecar:
    """istio-init's rules, then the proxy (as istio-proxy, UID 1337) in the pod's namespace.
    The rules go in first and are undone by `stop_sidecars` even when the proxy fails."""
    ns = topo.pod(pod).netns
    runner.run(
        ["ip", "netns", "exec", ns, "iptables-restore", "-w", "--noflush"],
        stdin=mesh.istio_iptables_restore(),
    )
    placeholder = Sidecar(pod, ns, 0, STATE_DIR / "logs" / f"sidecar-{pod}.log")
    started.append(placeholder)
    w = Workload(f"sidecar-{pod}", ns, (sys.executable, "-m", "tracer.lab.sidecar"), "listening on")
    placeholder.pid = start_workload(runner, w, STATE_DIR / "logs")
    started.remove(placeholder)
    return placeholder


def stop_sidecars(runner: Runner, sidecars: list[Sidecar]) -> dict[str, list[dict[str, Any]]]:
    """End each sidecar and remove its pod's rules; return each proxy's connection records."""
    logs: dict[str, list[dict[str, Any]]] = {}
    for sc in sidecars:
        if sc.pid:
            try:
                os.kill(sc.pid, signal.SIGTERM)
                os.waitpid(sc.pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass
        for argv in mesh.istio_cleanup():
            runner.run(["ip", "netns", "exec", sc.netns, "iptables", "-w", *argv], check=False)
        records = []
        text = sc.log.read_text(errors="replace") if sc.log.exists() else ""
        for line in text.splitlines():
            if line.startswith("{"):
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError:
                    continue
        logs[sc.pod] = records
        sc.log.unlink(missing_ok=True)
    sidecars.clear()
    return logs


@dataclass
class SocketLBRun:
    """The socket load-balancer of one run: a cgroup v2 named for this run, with the programs."""

    cgroup: Path
    lb: sockbpf.SocketLB

    @classmethod
    def start(cls, topo: Topology, name: str, state: dict[str, Any], log: Log) -> SocketLBRun:
        root = sockbpf.cgroup2_root()
        cg = root / f"{sockbpf.CGROUP_PREFIX}{name}-{os.getpid()}-{os.urandom(3).hex()}"
        # Recorded before it exists: `lab down` removes it after a crash.
        state.setdefault("cgroups", []).append(str(cg))
        write_state(state)
        cg.mkdir()
        lb = sockbpf.SocketLB(cg)
        run = cls(cg, lb)
        try:
            frontends = [
                sockbpf.Frontend(s.cluster_ip, p.port, p.protocol, e.ip, p.target_port)
                for s in socket_lb_services(topo)
                for p in s.ports
                for e in s.endpoints[:1]
            ]
            lb.install(frontends)
        except BaseException:
            run.stop(state)
            raise
        log(f"socket load-balancer: connect4/sendmsg4/recvmsg4 on cgroup {cg}")
        return run

    def wrap(self, argv: list[str]) -> list[str]:
        """The command, started inside the cgroup (the shell moves itself in, then execs)."""
        return ["sh", "-c", 'echo $$ > "$0/cgroup.procs" && exec "$@"', str(self.cgroup), *argv]

    def stop(self, state: dict[str, Any]) -> None:
        self.lb.close()
        if sockbpf.remove_cgroup(self.cgroup):
            cgs = state.get("cgroups", [])
            if str(self.cgroup) in cgs:
                cgs.remove(str(self.cgroup))
            write_state(state)

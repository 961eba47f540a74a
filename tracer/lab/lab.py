"""Lab lifecycle and scenario runs: `up`, `down`, `status`, `run_scenario`.

The edge of the lab: it runs commands through a `Runner`, starts workloads and tcpdumps in the
lab's namespaces, and writes run directories (tracer.rundir's format). It leaves nothing behind:
`down` finds everything by prefix, and a run stops its captures on every exit path.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tracer.capture.plan import NODE_FACT_COMMANDS, NODE_FACT_COMMANDS_BEFORE
from tracer.errors import LabError, MissingPrerequisiteError, UsageError
from tracer.lab import kubeproxy as kp
from tracer.lab import mesh, sockbpf
from tracer.lab.incident import fault_file
from tracer.lab.runner import Runner, SubprocessRunner, process_alive
from tracer.lab.scenarios import (
    INGRESS_HOST,
    IPV6_SCENARIOS,
    SLOW_DELAY_S,
    WEB_PORT,
    MoreRequest,
    Scenario,
    all_services,
    cluster_services,
    dns_records,
    external_dns_records,
    scenarios,
    socket_lb_services,
)
from tracer.lab.topology import (
    CLUSTER_CIDR,
    CLUSTER_CIDR6,
    EXTERNAL_NS,
    SERVICE_CIDR,
    SERVICE_CIDR6,
    STATE_DIR,
    UNDERLAY_NS,
    Topology,
    build_commands,
    lab_namespaces,
    plan_topology,
    read_state,
    require_up,
    resolv_files,
    run_all,
    teardown,
    topology_to_json,
    write_resolv,
    write_state,
)
from tracer.model import CapturePoint, Endpoint, Tuple5
from tracer.rules.conntrack import parse_conntrack
from tracer.rundir import Manifest, write_private
from tracer.rundir import Service as RunService
from tracer.rundir import ServiceEndpoint as RunEndpoint
from tracer.rundir import ServicePort as RunPort

Log = Callable[[str], None]

# Tool -> Debian package.
TOOLS = {
    "ip": "iproute2",
    "bridge": "iproute2",
    "tcpdump": "tcpdump",
    "iptables": "iptables",
    "iptables-restore": "iptables",
    "iptables-save": "iptables",
    "ip6tables-restore": "iptables",
    "nft": "nftables",
    "conntrack": "conntrack",
    "nginx": "nginx-light",
    "curl": "curl",
    "sysctl": "procps",
}
SNAPLEN = 256
GRACE_S = 0.5


def _quiet(_: str) -> None:
    pass


def check_prerequisites() -> None:
    """Root and every tool the lab drives; the message names the Debian package to install."""
    if os.geteuid() != 0:
        raise MissingPrerequisiteError(
            "the lab needs root (it creates network namespaces and kube-proxy rules)",
            hint="run it with sudo, or trace the saved runs: pathtrace analyze pcaps/clusterip-remote",
        )
    missing = sorted({pkg for tool, pkg in TOOLS.items() if shutil.which(tool) is None})
    if missing:
        tools = [t for t, p in TOOLS.items() if p in missing and shutil.which(t) is None]
        raise MissingPrerequisiteError(
            f"missing tool(s): {', '.join(tools)}",
            hint=f"install the Debian package(s): apt-get install {' '.join(missing)}",
        )


def node_info(topo: Topology, node: str, *, ipv6: bool = False) -> kp.NodeInfo:
    """What one family's proxier on `node` knows (a dual-stack node runs one per family)."""
    n = topo.node(node)
    return kp.NodeInfo(
        name=n.name,
        ips=(n.underlay_ip6 if ipv6 else n.underlay_ip,),
        pod_cidr=n.pod_cidr6 if ipv6 else n.pod_cidr,
        cluster_cidr=CLUSTER_CIDR6 if ipv6 else CLUSTER_CIDR,
        service_cidr=SERVICE_CIDR6 if ipv6 else SERVICE_CIDR,
    )


def kube_proxy_commands(topo: Topology, mode: str) -> list[tuple[list[str], str | None]]:
    """(argv, stdin) per command: what kube-proxy would run on each node for a full sync, per
    IP family (IPv6 too in a dual-stack lab: ip6tables, or the nft `ip6` table)."""
    if mode not in ("iptables", "nftables"):
        raise UsageError(f"unknown mode {mode!r}; expected iptables or nftables")
    all_services = cluster_services(topo)
    cmds: list[tuple[list[str], str | None]] = []
    for n in topo.nodes:
        ex = ["ip", "netns", "exec", n.netns]
        for v6 in (False, True) if topo.dual_stack else (False,):
            info = node_info(topo, n.name, ipv6=v6)
            services = [s for s in all_services if (":" in s.cluster_ip) == v6]
            if mode == "nftables":
                cmds.append(([*ex, "nft", "-f", "-"], kp.nft_ruleset(services, info)))
                continue
            tool = "ip6tables" if v6 else "iptables"
            jumps = kp.jump_rules(ipv6=v6)
            for chain in dict.fromkeys((j.table, j.target) for j in jumps):
                cmds.append(([*ex, tool, "-w", "-t", chain[0], "-N", chain[1]], None))
            for j in jumps:
                cmds.append(([*ex, tool, "-w", "-t", j.table, "-I", j.chain, *j.args()], None))
            payload = kp.iptables_restore(services, info)
            cmds.append(([*ex, f"{tool}-restore", "-w", "--noflush", "--counters"], payload))
    return cmds


# ---------------------------------------------------------------------------------------------
# Workloads


@dataclass(frozen=True)
class Workload:
    name: str
    netns: str
    argv: tuple[str, ...]
    ready: str  # a file that exists, or a log line that appears, once it serves
    ready_kind: str = "log"  # log | file


def nginx_conf(prefix: Path, listen: str, upstream: str) -> str:
    p = str(prefix)
    return f"""worker_processes 1;
error_log {p}/error.log warn;
pid {p}/nginx.pid;
events {{ worker_connections 64; }}
http {{
  access_log {p}/access.log;
  client_body_temp_path {p}/tmp/body;
  proxy_temp_path {p}/tmp/proxy;
  fastcgi_temp_path {p}/tmp/fastcgi;
  uwsgi_temp_path {p}/tmp/uwsgi;
  scgi_temp_path {p}/tmp/scgi;
  server {{
    listen {listen};
    server_name {INGRESS_HOST} _;
    location / {{
      proxy_pass http://{upstream};
      proxy_http_version 1.1;
      proxy_set_header Host $host;
    }}
  }}
}}
"""


def workloads(topo: Topology, state_dir: Path) -> list[Workload]:
    py = sys.executable
    out: list[Workload] = []
    for pod, delay in (("web-a", 0.0), ("web-b", 0.0), ("slow", SLOW_DELAY_S)):
        p = topo.pod(pod)
        argv = [py, "-m", "tracer.lab.httpd", "--port", str(WEB_PORT), "--name", pod]
        # Off until `pathtrace lab fault` writes the file (the intermittent fault).
        argv += ["--fault-file", str(fault_file(state_dir, pod))]
        if topo.dual_stack:
            argv += ["--bind", "::"]  # both families (net.ipv6.bindv6only is 0)
        if delay:
            argv += ["--delay", str(delay)]
        out.append(Workload(pod, p.netns, tuple(argv), "listening on"))
    cluster = [f"--record={k}={v}" for k, v in dns_records(topo).items()]
    out.append(
        Workload(
            "coredns",
            topo.pod("coredns").netns,
            (py, "-m", "tracer.lab.dns", "--port", "53", *cluster),
            "listening on",
        )
    )
    ext = [f"--record={k}={v}" for k, v in external_dns_records(topo).items()]
    out.append(
        Workload(
            "extdns",
            UNDERLAY_NS,
            (py, "-m", "tracer.lab.dns", "--bind", topo.router_ip, "--port", "53", *ext),
            "listening on",
        )
    )
    upstream = "10.96.0.101:80"  # Service web-remote's ClusterIP: the request crosses kube-proxy
    for name, netns, listen in (
        ("ingress", topo.pod("ingress").netns, "80"),
        ("ingress-hostnet", topo.nodes[0].netns, f"{topo.nodes[0].underlay_ip}:80"),
    ):
        d = state_dir / f"nginx-{name}"
        (d / "tmp").mkdir(parents=True, exist_ok=True)
        (d / "nginx.conf").write_text(nginx_conf(d, listen, upstream))
        out.append(
            Workload(
                name,
                netns,
                ("nginx", "-p", str(d), "-c", str(d / "nginx.conf"), "-g", "daemon off;"),
                str(d / "nginx.pid"),
                "file",
            )
        )
    return out


def start_workload(runner: Runner, w: Workload, log_dir: Path, timeout: float = 10.0) -> int:
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{w.name}.log"
    with open(log_path, "wb") as logf:
        proc = runner.spawn(["ip", "netns", "exec", w.netns, *w.argv], stdout=logf, stderr=logf)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise LabError(
                f"{w.name} exited at start (exit {proc.returncode}): "
                f"{log_path.read_text(errors='replace')[-400:]}"
            )
        if w.ready_kind == "file" and Path(w.ready).exists():
            return proc.pid
        if w.ready_kind == "log" and w.ready in log_path.read_text(errors="replace"):
            return proc.pid
        time.sleep(0.05)
    raise LabError(f"{w.name} did not become ready within {timeout:g} s (log: {log_path})")


# ---------------------------------------------------------------------------------------------
# up / down / status


def up(
    mode: str = "iptables",
    nodes: int = 2,
    runner: Runner | None = None,
    log: Log = _quiet,
    *,
    ipv6: bool = False,
) -> dict[str, Any]:
    """Build the lab; on any failure tear down what was built and re-raise."""
    runner = runner or SubprocessRunner()
    if mode not in ("iptables", "nftables"):
        raise UsageError(f"unknown mode {mode!r}; expected iptables or nftables")
    check_prerequisites()
    existing = lab_namespaces(runner)
    state = read_state()
    if existing and state and state.get("complete"):
        raise LabError(
            f"the lab is already up ({state.get('mode')} mode, {len(state.get('nodes', []))} nodes)",
            hint="`pathtrace lab down` first to rebuild it",
        )
    if existing:
        raise LabError(
            f"a half-built lab is present ({len(existing)} pt- namespaces, no complete state)",
            hint="run `pathtrace lab down` to clean it up",
        )
    try:
        topo = plan_topology(nodes, dual_stack=ipv6)
    except ValueError as e:
        raise UsageError(str(e)) from e
    t0 = time.monotonic()
    state = {
        "version": 1,
        "mode": mode,
        "dual_stack": ipv6,
        "nodes": [n.name for n in topo.nodes],
        "topology": topology_to_json(topo),
        "created": datetime.now(UTC).isoformat(),
        "processes": [],
        "complete": False,
    }
    try:
        write_state(state)
        log(f"creating {len(topo.namespaces())} namespaces and their links")
        run_all(runner, build_commands(topo))
        write_resolv(resolv_files(topo))
        log(f"installing kube-proxy rules ({mode} mode) on {len(topo.nodes)} nodes")
        for argv, stdin in kube_proxy_commands(topo, mode):
            runner.run(argv, stdin=stdin)
        for w in workloads(topo, STATE_DIR):
            log(f"starting {w.name} in {w.netns}")
            pid = start_workload(runner, w, STATE_DIR / "logs")
            state["processes"].append({"name": w.name, "netns": w.netns, "pid": pid})
            write_state(state)
        state["complete"] = True
        state["up_seconds"] = round(time.monotonic() - t0, 3)
        write_state(state)
    except BaseException:
        log("setup failed: tearing down what was built")
        teardown(runner)
        raise
    log(f"lab up in {state['up_seconds']:.2f} s")
    return state


def down(runner: Runner | None = None, log: Log = _quiet) -> list[str]:
    """Remove the lab (works without a state file, after a crash or kill -9)."""
    runner = runner or SubprocessRunner()
    if os.geteuid() != 0:
        raise MissingPrerequisiteError("removing the lab needs root", hint="run it with sudo")
    # The local API first: it reads the state file to find its PID and kubeconfig.
    from tracer.lab.api import stop_api

    stop_api(log)
    cgroups = [str(c) for c in (read_state() or {}).get("cgroups", [])]
    removed = teardown(runner, log)
    # A run killed mid-way leaves its cgroup (named in the state file): its processes are gone now.
    for cg in cgroups:
        if sockbpf.remove_cgroup(Path(cg)):
            removed.append(cg)
    shutil.rmtree(STATE_DIR, ignore_errors=True)
    return removed


def status(runner: Runner | None = None) -> dict[str, Any]:
    runner = runner or SubprocessRunner()
    state = read_state()
    namespaces = lab_namespaces(runner)
    procs = []
    for p in (state or {}).get("processes", []):
        alive = process_alive(int(p.get("pid", 0)))
        procs.append({**p, "alive": alive})
    if not namespaces and not state:
        condition = "down"
    elif state and state.get("complete") and namespaces and all(p["alive"] for p in procs):
        condition = "up"
    else:
        condition = "half-built"
    return {
        "status": condition,
        "mode": (state or {}).get("mode"),
        "nodes": (state or {}).get("nodes", []),
        "namespaces": namespaces,
        "processes": procs,
        "created": (state or {}).get("created"),
    }


# ---------------------------------------------------------------------------------------------
# A scenario run


@dataclass
class _Capture:
    point: Any
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
) -> list[_Capture]:
    points_dir = run_dir / "points"
    points_dir.mkdir(parents=True, exist_ok=True)
    caps: list[_Capture] = []
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
            caps.append(_Capture(pt, f, proc, err, time.time_ns()))
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


def stop_captures(caps: list[_Capture]) -> None:
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


def parse_conntrack_entry(text: str, dst_ip: str, dport: int, proto: str) -> dict[str, Any] | None:
    """The first conntrack -L entry whose original tuple goes to dst_ip:dport (or None)."""

    def words(t: Tuple5) -> dict[str, str]:
        out = {"src": t.src.ip, "dst": t.dst.ip}
        if t.src.port is not None:
            out["sport"] = str(t.src.port)
        if t.dst.port is not None:
            out["dport"] = str(t.dst.port)
        return out

    for e in parse_conntrack(text).entries:
        if e.proto == proto and e.original.dst == Endpoint(dst_ip, dport):
            return {
                "line": e.text,
                "original": words(e.original),
                "reply": words(e.reply),
                "dnat_to": str(e.reply.src),
                "snat_to": str(e.reply.dst),
            }
    return None


def _node_facts(runner: Runner, topo: Topology, run_dir: Path) -> dict[str, str]:
    conntrack: dict[str, str] = {}
    for n in topo.nodes:
        d = run_dir / "nodes" / n.name
        d.mkdir(parents=True, exist_ok=True)
        ex = ["ip", "netns", "exec", n.netns]
        ct = runner.run([*ex, "conntrack", "-L"], check=False).stdout
        conntrack[n.name] = ct
        files = {
            "conntrack.txt": ct,
            "iptables-save.txt": runner.run([*ex, "iptables-save"], check=False).stdout,
            "nft.txt": runner.run([*ex, "nft", "list", "ruleset"], check=False).stdout,
            "links.json": runner.run(
                ["ip", "-n", n.netns, "-j", "addr", "show"], check=False
            ).stdout,
        }
        for name in LAB_EXTRA_FACTS:
            files[name] = runner.run([*ex, *NODE_FACT_COMMANDS[name]], check=False).stdout
        for name, text in files.items():
            write_private(d / name, text)
    return conntrack


# Node facts the lab collects as a live capture does, with the same commands.
LAB_EXTRA_FACTS = ("ip6tables-save.txt", "conntrack-stats.txt", "conntrack-limits.txt")


def _node_facts_before(runner: Runner, topo: Topology, run_dir: Path) -> None:
    """What a live capture samples on each node before its captures start (conntrack -S)."""
    for n in topo.nodes:
        d = run_dir / "nodes" / n.name
        d.mkdir(parents=True, exist_ok=True)
        for name, argv in NODE_FACT_COMMANDS_BEFORE.items():
            out = runner.run(["ip", "netns", "exec", n.netns, *argv], check=False).stdout
            write_private(d / name, out)


POD_FACTS_DIR = "pods"  # RUN/pods/<point>/: a pod's own nat table, conntrack and links


def _pod_facts(runner: Runner, topo: Topology, sc: Scenario, run_dir: Path) -> None:
    """A meshed pod's own facts, as the debug container collects them: its nat table (the
    REDIRECTs), its conntrack table (the REDIRECT's original destination) and its links (an
    `any` capture inside the pod numbers interfaces in the pod's own ifindex space)."""
    for pt in sc.points:
        if pt.pod not in sc.sidecars:
            continue
        ns = topo.pod(pt.pod).netns
        d = run_dir / POD_FACTS_DIR / pt.name
        d.mkdir(parents=True, exist_ok=True)
        ex = ["ip", "netns", "exec", ns]
        files = {
            "iptables-save.txt": runner.run(
                [*ex, "iptables-save", "-t", "nat"], check=False
            ).stdout,
            "conntrack.txt": runner.run([*ex, "conntrack", "-L"], check=False).stdout,
            "links.json": runner.run(["ip", "-n", ns, "-j", "addr", "show"], check=False).stdout,
        }
        for name, text in files.items():
            write_private(d / name, text)


@dataclass
class _Sidecar:
    pod: str
    netns: str
    pid: int
    log: Path


def _start_sidecar(runner: Runner, topo: Topology, pod: str, started: list[_Sidecar]) -> _Sidecar:
    """istio-init's rules, then the proxy (as istio-proxy, UID 1337) in the pod's namespace.
    The rules go in first and are undone by `_stop_sidecars` even when the proxy fails."""
    ns = topo.pod(pod).netns
    runner.run(
        ["ip", "netns", "exec", ns, "iptables-restore", "-w", "--noflush"],
        stdin=mesh.istio_iptables_restore(),
    )
    placeholder = _Sidecar(pod, ns, 0, STATE_DIR / "logs" / f"sidecar-{pod}.log")
    started.append(placeholder)
    w = Workload(f"sidecar-{pod}", ns, (sys.executable, "-m", "tracer.lab.sidecar"), "listening on")
    placeholder.pid = start_workload(runner, w, STATE_DIR / "logs")
    started.remove(placeholder)
    return placeholder


def _stop_sidecars(runner: Runner, sidecars: list[_Sidecar]) -> dict[str, list[dict[str, Any]]]:
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
class _SocketLBRun:
    """The socket load-balancer of one run: a cgroup v2 named for this run, with the programs."""

    cgroup: Path
    lb: sockbpf.SocketLB

    @classmethod
    def start(cls, topo: Topology, name: str, state: dict[str, Any], log: Log) -> _SocketLBRun:
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


def _run_services(topo: Topology) -> tuple[RunService, ...]:
    out = []
    for s in all_services(topo):
        out.append(
            RunService(
                namespace=s.namespace,
                name=s.name,
                cluster_ips=(s.cluster_ip,),
                ports=tuple(
                    RunPort(
                        port=p.port,
                        protocol=p.protocol,
                        name=p.name,
                        target_port=p.target_port,
                        node_port=p.node_port,
                    )
                    for p in s.ports
                ),
                endpoints=tuple(
                    RunEndpoint(address=e.ip, pod=e.pod, node=e.node) for e in s.endpoints
                ),
                external_traffic_policy=s.external_traffic_policy,
                session_affinity=s.session_affinity,
            )
        )
    return tuple(out)


def outcome_of(exit_code: int, output: str) -> str:
    """curl's exit code as the scenario outcome vocabulary."""
    if exit_code == 0 and "HTTP 200" in output:
        return "http-200"
    if exit_code == 6:
        return "nxdomain"
    if exit_code == 7:
        if "Connection refused" in output:
            return "refused"
        if "No route to host" in output or "unreachable" in output:
            return "unreachable"
        return "connect-failed"
    if exit_code == 28:
        return "timeout"
    return f"curl-exit-{exit_code}"


def run_scenario(
    name: str,
    out_dir: Path | None = None,
    runner: Runner | None = None,
    log: Log = _quiet,
) -> Path:
    """Run one scenario with captures everywhere at once; return the run directory."""
    runner = runner or SubprocessRunner()
    check_prerequisites()
    state, topo = require_up()
    known = scenarios(topo)
    if name in IPV6_SCENARIOS and not topo.dual_stack:
        raise UsageError(
            f"scenario {name!r} needs the dual-stack lab",
            hint="`pathtrace lab down`, then `pathtrace lab up --ipv6`",
        )
    if name not in known:
        raise UsageError(f"unknown scenario {name!r}; known: {', '.join(known)}")
    sc = known[name]
    run_dir = (
        Path(out_dir)
        if out_dir
        else Path.cwd() / f"pathtrace-lab-{name}-{time.strftime('%Y%m%d-%H%M%S')}"
    )
    if run_dir.exists() and any(run_dir.iterdir()):
        raise UsageError(f"{run_dir}: exists and is not empty")
    run_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(run_dir, 0o700)
    t0 = time.monotonic()
    for n in topo.nodes:
        # A clean conntrack table: the entry this run makes is the only one to read back.
        runner.run(["ip", "netns", "exec", n.netns, "conntrack", "-F"], check=False)
    caps: list[_Capture] = []
    setup_done: list[tuple[str, tuple[str, ...]]] = []
    sidecars: list[_Sidecar] = []
    lb: _SocketLBRun | None = None
    try:
        for (netns, argv), undo in zip(sc.setup, sc.cleanup, strict=False):
            runner.run(["ip", "netns", "exec", netns, *argv])
            setup_done.append(undo)
        _node_facts_before(runner, topo, run_dir)
        for pod in sc.sidecars:
            log(
                f"meshing {pod}: istio-iptables rules and a sidecar on :{mesh.OUTBOUND_PORT}/:{mesh.INBOUND_PORT}"
            )
            sidecars.append(_start_sidecar(runner, topo, pod, sidecars))
        command = ["ip", "netns", "exec", sc.client_netns, *sc.command]
        if sc.socket_lb:
            lb = _SocketLBRun.start(topo, sc.name, state, log)
            # Joined before `ip netns exec`, which remounts /sys (and hides the cgroup mount).
            command = lb.wrap(command)
        log(f"starting {len(sc.points)} captures: {', '.join(p.name for p in sc.points)}")
        caps = start_captures(runner, sc, run_dir)
        log(f"request from {sc.client_netns}: {' '.join(sc.command)}")
        req_start = time.time_ns()
        res = runner.run(command, check=False, timeout=30)
        more = []
        for extra in sc.more:
            log(f"request from {sc.client_netns}: {' '.join(extra.command)}")
            r = runner.run(
                ["ip", "netns", "exec", sc.client_netns, *extra.command], check=False, timeout=30
            )
            more.append((extra, r))
        req_end = time.time_ns()
        time.sleep(GRACE_S)  # tcpdump's last packets, and the FIN exchange
        conntrack = _node_facts(runner, topo, run_dir)
        _pod_facts(runner, topo, sc, run_dir)
        socket_lb_map = list(lb.lb.entries()) if lb is not None else []
    finally:
        stop_captures(caps)
        sidecar_logs = _stop_sidecars(runner, sidecars)
        if lb is not None:
            lb.stop(state)
        for netns, argv in setup_done:
            runner.run(["ip", "netns", "exec", netns, *argv], check=False)
    output = (res.stdout + res.stderr).strip()
    outcome = outcome_of(res.returncode, output)
    truth: dict[str, Any] = {
        "scenario": sc.name,
        "description": sc.description,
        "mode": state.get("mode"),
        "expected_path": list(sc.path),
        "expected_outcome": sc.expect_outcome,
        "outcome": outcome,
        "service": sc.service,
        "frontend": sc.frontend,
        "backend": sc.backend,
        "snat_node": sc.snat_node,
        "server_delay_ns": int(sc.server_delay_s * 1e9) if sc.server_delay_s else None,
        "notes": list(sc.notes),
    }
    translations: list[dict[str, Any]] = []
    if sc.socket_lb and sc.frontend and sc.backend:
        # Done in the client's connect(): no packet carries the frontend, no node rewrites it.
        translations.append(
            {
                "kind": "socket-LB",
                "where": "client socket (cgroup connect4)",
                "from": sc.frontend,
                "to": sc.backend,
            }
        )
        truth["socket_lb"] = {
            "programs": [sockbpf.ATTACH_NAMES[t] for t in sorted(sockbpf.ATTACH_NAMES)],
            "map": [
                {"frontend": f"{k[0]}:{k[1]}", "protocol": k[2], "backend": f"{v[0]}:{v[1]}"}
                for k, v in socket_lb_map
            ],
        }
    elif sc.frontend and sc.backend:
        translations.append(
            {"kind": "DNAT", "node": sc.conntrack_node, "from": sc.frontend, "to": sc.backend}
        )
    if sc.sidecars and sc.frontend and sc.backend:
        client_pod, server_pod = sc.sidecars[0], sc.sidecars[-1]
        translations.insert(
            0,
            {
                "kind": "REDIRECT",
                "pod": client_pod,
                "from": sc.frontend,
                "to": f"127.0.0.1:{mesh.OUTBOUND_PORT}",
            },
        )
        backend_ip = sc.backend.rpartition(":")[0]
        translations.append(
            {
                "kind": "REDIRECT",
                "pod": server_pod,
                "from": sc.backend,
                "to": f"{backend_ip}:{mesh.INBOUND_PORT}",
            }
        )
        truth["sidecars"] = {pod: sidecar_logs.get(pod, []) for pod in sc.sidecars}
    if sc.snat_node:
        translations.append(
            {"kind": "SNAT", "node": sc.snat_node, "to": "node address (masquerade --random-fully)"}
        )
    truth["expected_translations"] = translations
    if more:
        truth["requests"] = [_more_truth(extra, r) for extra, r in more]
    if sc.conntrack_node and sc.frontend:
        ip, _, port = sc.frontend.rpartition(":")
        ip = ip.strip("[]")  # [IPv6]:port
        proto = "udp" if sc.frontend.endswith(":53") else "tcp"
        truth["conntrack"] = parse_conntrack_entry(
            conntrack[sc.conntrack_node], ip, int(port), proto
        )
    points = []
    for cap in caps:
        pt = cap.point
        points.append(
            CapturePoint(
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
        )
    warnings = [
        f"request {' '.join(r['command'][-1:])}: curl's {r['curl']!r} is not what the "
        f"configuration allows"
        for r in truth.get("requests", ())
        if r["outcome"] is None
    ]
    if outcome != sc.expect_outcome:
        warnings.append(
            f"outcome {outcome!r} differs from the scenario's expected {sc.expect_outcome!r}"
        )
    manifest = Manifest(
        source="lab",
        created=datetime.now(UTC).isoformat(),
        points=tuple(points),
        services=_run_services(topo),
        request={
            "command": [*sc.command],
            "netns": sc.client_netns,
            "exit_code": res.returncode,
            "output": output[-2000:],
            "started_ns": req_start,
            "finished_ns": req_end,
        },
        warnings=tuple(warnings),
        extra={"lab": truth},
    )
    from tracer.rundir import write_manifest

    write_manifest(run_dir, manifest)
    log(f"{sc.name}: {outcome} in {time.monotonic() - t0:.2f} s -> {run_dir}")
    return run_dir


def _more_truth(extra: MoreRequest, res: Any) -> dict[str, Any]:
    """What the configuration and the kernel (through curl's result) make of a further request."""
    output = (res.stdout + res.stderr).strip()
    curl = outcome_of(res.returncode, output)
    return {
        "command": list(extra.command),
        "frontend": extra.frontend,
        "exit_code": res.returncode,
        "curl": curl,
        # None: curl saw something the configuration does not allow (the run warns).
        "outcome": dict(extra.outcomes).get(curl),
        "answered_by": extra.answered_by,
        "answered_at_node": extra.answered_at_node,
        "last_point": extra.last_point,
        "server_delay_ns": int(extra.server_delay_s * 1e9) if extra.server_delay_s else None,
        "output": output[-500:],
    }


def describe(topo: Topology | None = None) -> list[tuple[str, str]]:
    """(name, description) of every scenario; the IPv6 ones say they need the dual-stack lab."""
    topo = topo or plan_topology(dual_stack=True)
    return [
        (s.name, s.description + (" [dual-stack lab]" if s.name in IPV6_SCENARIOS else ""))
        for s in scenarios(topo).values()
    ]


def state_json() -> str:
    return json.dumps(read_state() or {}, indent=2)


__all__ = [
    "EXTERNAL_NS",
    "check_prerequisites",
    "describe",
    "down",
    "kube_proxy_commands",
    "outcome_of",
    "parse_conntrack_entry",
    "run_scenario",
    "status",
    "up",
]

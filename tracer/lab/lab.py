"""Lab lifecycle and scenario runs: `up`, `down`, `status`, `run_scenario`.

The edge of the lab: it runs commands through a `Runner`, builds the lab's namespaces, rules and
workloads (tracer.lab.workloads), and runs a scenario: its add-ons (tracer.lab.addons), captures
(tracer.lab.captures) and node facts (tracer.lab.facts), then the run directory (tracer.rundir's
format) with the ground truth of tracer.lab.truth. It leaves nothing behind: `down` finds
everything by prefix, and a run stops its captures and removes its add-ons on every exit path.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tracer.errors import LabError, MissingPrerequisiteError, UsageError
from tracer.lab import kubeproxy as kp
from tracer.lab import mesh, sockbpf
from tracer.lab.addons import Sidecar, SocketLBRun, start_sidecar, stop_sidecars
from tracer.lab.api import stop_api
from tracer.lab.captures import Capture, capture_point, start_captures, stop_captures
from tracer.lab.facts import node_facts, node_facts_before, pod_facts
from tracer.lab.runner import Completed, Runner, SubprocessRunner, process_alive
from tracer.lab.scenarios import IPV6_SCENARIOS, MoreRequest, scenarios
from tracer.lab.services import cluster_services
from tracer.lab.topology import (
    CLUSTER_CIDR,
    CLUSTER_CIDR6,
    EXTERNAL_NS,
    SERVICE_CIDR,
    SERVICE_CIDR6,
    STATE_DIR,
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
from tracer.lab.truth import Observed, run_manifest
from tracer.lab.workloads import start_workload, workloads
from tracer.rundir import write_manifest

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
    caps: list[Capture] = []
    setup_done: list[tuple[str, tuple[str, ...]]] = []
    sidecars: list[Sidecar] = []
    lb: SocketLBRun | None = None
    try:
        for (netns, argv), undo in zip(sc.setup, sc.cleanup, strict=False):
            runner.run(["ip", "netns", "exec", netns, *argv])
            setup_done.append(undo)
        node_facts_before(runner, topo, run_dir)
        for pod in sc.sidecars:
            log(
                f"meshing {pod}: istio-iptables rules and a sidecar on :{mesh.OUTBOUND_PORT}/:{mesh.INBOUND_PORT}"
            )
            sidecars.append(start_sidecar(runner, topo, pod, sidecars))
        command = ["ip", "netns", "exec", sc.client_netns, *sc.command]
        if sc.socket_lb:
            lb = SocketLBRun.start(topo, sc.name, state, log)
            # Joined before `ip netns exec`, which remounts /sys (and hides the cgroup mount).
            command = lb.wrap(command)
        log(f"starting {len(sc.points)} captures: {', '.join(p.name for p in sc.points)}")
        caps = start_captures(runner, sc, run_dir)
        log(f"request from {sc.client_netns}: {' '.join(sc.command)}")
        req_start = time.time_ns()
        res = runner.run(command, check=False, timeout=30)
        more: list[tuple[MoreRequest, Completed]] = []
        for extra in sc.more:
            log(f"request from {sc.client_netns}: {' '.join(extra.command)}")
            r = runner.run(
                ["ip", "netns", "exec", sc.client_netns, *extra.command], check=False, timeout=30
            )
            more.append((extra, r))
        req_end = time.time_ns()
        time.sleep(GRACE_S)  # tcpdump's last packets, and the FIN exchange
        conntrack = node_facts(runner, topo, run_dir)
        pod_facts(runner, topo, sc, run_dir)
        socket_lb_map = tuple(lb.lb.entries()) if lb is not None else ()
    finally:
        stop_captures(caps)
        sidecar_logs = stop_sidecars(runner, sidecars)
        if lb is not None:
            lb.stop(state)
        for netns, argv in setup_done:
            runner.run(["ip", "netns", "exec", netns, *argv], check=False)
    seen = Observed(
        request=res,
        started_ns=req_start,
        finished_ns=req_end,
        more=tuple(more),
        points=tuple(capture_point(cap) for cap in caps),
        conntrack=conntrack,
        sidecar_logs=sidecar_logs,
        socket_lb_map=socket_lb_map,
    )
    manifest = run_manifest(sc, topo, state.get("mode"), seen, datetime.now(UTC).isoformat())
    write_manifest(run_dir, manifest)
    log(
        f"{sc.name}: {manifest.extra['lab']['outcome']} in {time.monotonic() - t0:.2f} s -> {run_dir}"
    )
    return run_dir


def state_json() -> str:
    return json.dumps(read_state() or {}, indent=2)


__all__ = [
    "EXTERNAL_NS",
    "check_prerequisites",
    "down",
    "kube_proxy_commands",
    "run_scenario",
    "status",
    "up",
]

"""What a scenario run records of the nodes and meshed pods beside its captures: the kernel's
tables (conntrack, iptables/nft rules, links), with the commands a live capture uses.
"""

from __future__ import annotations

from pathlib import Path

from tracer.capture.plan import NODE_FACT_COMMANDS, NODE_FACT_COMMANDS_BEFORE
from tracer.lab.runner import Runner
from tracer.lab.scenarios import Scenario
from tracer.lab.topology import Topology
from tracer.rundir import write_private


def node_facts(runner: Runner, topo: Topology, run_dir: Path) -> dict[str, str]:
    """Each node's conntrack table, rules and links, as a live capture collects them, into
    RUN/nodes/<node>/; returns each node's conntrack -L text."""
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


def node_facts_before(runner: Runner, topo: Topology, run_dir: Path) -> None:
    """What a live capture samples on each node before its captures start (conntrack -S)."""
    for n in topo.nodes:
        d = run_dir / "nodes" / n.name
        d.mkdir(parents=True, exist_ok=True)
        for name, argv in NODE_FACT_COMMANDS_BEFORE.items():
            out = runner.run(["ip", "netns", "exec", n.netns, *argv], check=False).stdout
            write_private(d / name, out)


POD_FACTS_DIR = "pods"  # RUN/pods/<point>/: a pod's own nat table, conntrack and links


def pod_facts(runner: Runner, topo: Topology, sc: Scenario, run_dir: Path) -> None:
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

"""What a capture reads besides packets: each node's rules, conntrack and links (before and after
the captures), a meshed pod's own nat table and conntrack, and a load-balancer agent's view. A
command that fails is a note, never an error: the capture stands without it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from tracer.capture.backend import CaptureBackend
from tracer.capture.plan import (
    LB_AGENT_FACT_COMMANDS,
    POD_FACT_COMMANDS,
    CapturePlan,
    PlannedPoint,
)
from tracer.errors import PathtraceError
from tracer.rundir import write_private

# Node facts whose absence is normal: legacy iptables, IPVS, kube-proxy's metrics port, IPv6.
_OPTIONAL_FACTS = frozenset(
    ("iptables-legacy-save.txt", "ipvsadm.txt", "proxy-mode.txt", "ip6tables-save.txt")
)


def collect_node_facts(
    plan: CapturePlan,
    backend: CaptureBackend,
    run: Path,
    notes: list[str],
    facts: Mapping[str, Sequence[str]],
) -> None:
    """Every node point's `facts` (file name -> command) into RUN/nodes/<node>/."""
    for p in plan.points:
        if p.kind == "node":
            _save_outputs(
                backend, p, facts, run / "nodes" / p.node, f"node {p.node}", notes, _OPTIONAL_FACTS
            )


def collect_pod_facts(
    plan: CapturePlan, backend: CaptureBackend, run: Path, notes: list[str]
) -> None:
    """A meshed pod's own nat table, conntrack and links, through its debug container (which
    shares the pod's network namespace), into RUN/pods/<point>/."""
    for p in plan.points:
        if p.kind != "ephemeral" or p.mesh is None:
            continue
        _save_outputs(
            backend,
            p,
            POD_FACT_COMMANDS,
            run / "pods" / p.name,
            f"pod {p.namespace}/{p.pod}",
            notes,
        )


def collect_lb_agent_facts(
    plan: CapturePlan, backend: CaptureBackend, run: Path, notes: list[str]
) -> None:
    """A Cilium agent's Services and conntrack on each node of the path, into
    RUN/nodes/<node>/cilium-*.txt (the evidence when an eBPF load-balancer translated)."""
    for a in plan.lb_agents:
        _save_outputs(
            backend,
            a,
            LB_AGENT_FACT_COMMANDS,
            run / "nodes" / a.node,
            f"{a.namespace}/{a.pod}",
            notes,
        )


def _save_outputs(
    backend: CaptureBackend,
    target: PlannedPoint,
    commands: Mapping[str, Sequence[str]],
    directory: Path,
    who: str,
    notes: list[str],
    optional: frozenset[str] = frozenset(),
) -> None:
    """Run each of `commands` in `target` and keep its output as `directory`/NAME (mode 0600);
    a command that fails is a note naming `who`, never an error: the capture stands without it.
    A command named in `optional` fails silently (what it reads is often absent by design)."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, argv in commands.items():
        try:
            code, out, err, msg = backend.run(target, argv, 20.0)
        except PathtraceError as e:
            notes.append(f"{who}: {' '.join(argv)} failed: {e.message}")
            continue
        if code == 0:
            write_private(directory / name, out)
        elif name not in optional:
            why = err.decode("utf-8", "replace").strip() or msg or f"exit {code}"
            notes.append(f"{who}: {' '.join(argv)}: {why}")

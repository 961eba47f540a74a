"""Step 1, nodes and pods: the cluster's health facts (RUN/cluster/health.json).

A node not Ready or under pressure, a pod on the request's path (or kube-proxy, or cluster DNS)
not running, not ready, OOMKilled or restarting, a node near its CPU or memory limit. Pods off
the path are only counted. Pure: facts in, findings out.
"""

from __future__ import annotations

from tracer.diagnose.model import Finding, RunFacts
from tracer.diagnose.steps.common import LOCATED, SYMPTOM
from tracer.health import PRESSURE_CONDITIONS, HealthFacts, NodeHealth, PodHealth
from tracer.words import count


def step_health(f: RunFacts) -> list[Finding]:
    h: HealthFacts | None = f.health
    if h is None:
        return [
            Finding(
                "info",
                1,
                "No node or pod health facts in this run",
                ("RUN/cluster/health.json is absent (a lab or imported run)",),
                "on a cluster, `pathtrace capture` (or `pathtrace diagnose --from … --to …`) "
                "saves them; or check `kubectl get nodes` and `kubectl get pods -A`",
            )
        ]
    out: list[Finding] = []
    for n in h.nodes:
        out += _node_findings(n)
    on_path = _on_path_pods(f)
    others_bad: list[str] = []
    for p in h.pods:
        found, unhealthy = _pod_findings(p, on_path)
        out += found
        if unhealthy is not None:
            others_bad.append(unhealthy)
    ebpf_lb = f.before_wire is not None or any(n.cilium is not None for n in f.nodes.values())
    if not any(p.component == "kube-proxy" for p in h.pods) and not ebpf_lb:
        out.append(
            Finding(
                "info",
                1,
                "No kube-proxy pod found",
                ("API: no pod labelled k8s-app=kube-proxy in the namespaces read",),
                "kube-proxy may run as a systemd service, or be replaced (Cilium, Calico eBPF): "
                "then the node's KUBE-* rules are not where the Service is translated",
            )
        )
    if others_bad:
        out.append(
            Finding(
                "info",
                1,
                f"{count(len(others_bad), 'pod')} off the path "
                f"{'is' if len(others_bad) == 1 else 'are'} not healthy",
                tuple(others_bad[:10]),
                "kubectl get pods -A | grep -v Running",
            )
        )
    out += _usage_findings(h)
    if not any(x.severity != "info" for x in out):
        out.append(_healthy(h))
    return out


def _node_findings(n: NodeHealth) -> list[Finding]:
    """A node that is not Ready, and each pressure condition it reports."""
    out: list[Finding] = []
    if n.ready is not True:
        cond = next((c for c in n.conditions if c.type == "Ready"), None)
        why = f" ({cond.reason}: {cond.message})" if cond and (cond.reason or cond.message) else ""
        out.append(
            Finding(
                "error",
                1,
                f"Node {n.name} is not Ready{why}",
                (f"API: node/{n.name} condition Ready={cond.status if cond else 'absent'}",),
                f"kubectl describe node {n.name}; check the kubelet and the container runtime "
                "on it",
                LOCATED,
            )
        )
    for c in n.conditions:
        if c.type in PRESSURE_CONDITIONS and c.status == "True":
            out.append(
                Finding(
                    "warning",
                    1,
                    f"Node {n.name} reports {c.type}",
                    (f"API: node/{n.name} condition {c.type}=True ({c.reason or ''})",),
                    f"kubectl describe node {n.name}; free the resource or move pods away",
                    SYMPTOM + 10,
                )
            )
    return out


def _on_path_pods(f: RunFacts) -> set[str]:
    names = {
        f"{p.namespace}/{p.pod}" for p in f.manifest.points if p.pod and p.namespace is not None
    }
    for s in f.manifest.services:
        names |= {e.pod for e in s.endpoints if e.pod}
    return names


def _pod_problems(p: PodHealth) -> list[str]:
    out: list[str] = []
    if p.phase not in ("Running", "Succeeded"):
        out.append(f"phase {p.phase}" + (f" ({p.reason})" if p.reason else ""))
    elif p.phase == "Running" and not p.ready:
        waiting = [f"{c.name}: {c.state}" for c in p.containers if c.state != "running"]
        out.append("not ready" + (f" ({'; '.join(waiting)})" if waiting else ""))
    return out


def _pod_findings(p: PodHealth, on_path: set[str]) -> tuple[list[Finding], str | None]:
    """A pod that matters (on the path, kube-proxy or cluster DNS): its problems, an OOM kill or
    its restarts. Any other pod gives no finding, only the line that counts it when it is not
    healthy (the second value)."""
    ref = f"{p.namespace}/{p.name}"
    important = ref in on_path or p.component is not None
    what = {"kube-proxy": "kube-proxy pod ", "dns": "cluster DNS pod "}.get(
        p.component or "", "pod "
    )
    problems = _pod_problems(p)
    api = f"API: pod/{ref} on {p.node or '?'}: phase {p.phase}, ready {p.ready}, " + (
        ", ".join(f"{c.name} {c.state} restarts {c.restarts}" for c in p.containers)
        or "no container statuses"
    )
    out: list[Finding] = []
    unhealthy: str | None = None
    if problems:
        if important:
            out.append(
                Finding(
                    "error",
                    1,
                    f"The {what}{ref} is {'; '.join(problems)}",
                    (api,),
                    f"kubectl describe pod -n {p.namespace} {p.name}; kubectl logs -n "
                    f"{p.namespace} {p.name} --previous",
                    LOCATED - 5,
                )
            )
        else:
            unhealthy = f"{ref} ({'; '.join(problems)})"
    oom = p.oom_killed
    if oom and important:
        out.append(
            Finding(
                "warning",
                1,
                f"The {what}{ref} was OOMKilled ({', '.join(oom)})",
                (api,),
                "raise the container's memory limit or find what grows: kubectl top pod "
                f"-n {p.namespace} {p.name}",
                SYMPTOM + 10,
            )
        )
    elif p.restarts and important:
        last = ", ".join(
            f"{c.name}: last {c.last_reason or 'exit'} {c.last_exit_code or ''}".strip()
            for c in p.containers
            if c.restarts
        )
        out.append(
            Finding(
                "warning",
                1,
                f"The {what}{ref} restarted {count(p.restarts, 'time')} ({last})",
                (api,),
                f"kubectl logs -n {p.namespace} {p.name} --previous",
                SYMPTOM - 10,
            )
        )
    return out, unhealthy


def _usage_findings(h: HealthFacts) -> list[Finding]:
    """Nodes using 90% or more of their allocatable CPU or memory (metrics.k8s.io)."""
    if h.metrics is None or not h.node_capacity:
        return []
    out: list[Finding] = []
    for u in h.metrics:
        cap = h.node_capacity.get(u.name) if u.kind == "node" else None
        if cap is None:
            continue
        cpu = u.cpu_millicores / cap[0] if cap[0] else 0.0
        mem = u.memory_bytes / cap[1] if cap[1] else 0.0
        if cpu >= 0.9 or mem >= 0.9:
            out.append(
                Finding(
                    "warning",
                    1,
                    f"Node {u.name} is near its limits: CPU {cpu:.0%}, memory {mem:.0%}",
                    (
                        f"metrics.k8s.io: node/{u.name} cpu {u.cpu_millicores}m of "
                        f"{cap[0]}m, memory {u.memory_bytes >> 20} MiB of {cap[1] >> 20} MiB",
                    ),
                    f"kubectl top pods -A --sort-by=cpu; kubectl describe node {u.name}",
                    SYMPTOM,
                )
            )
    return out


def _healthy(h: HealthFacts) -> Finding:
    ready = sum(1 for n in h.nodes if n.ready)
    return Finding(
        "info",
        1,
        f"Nodes and pods look healthy: {ready}/{len(h.nodes)} nodes Ready, "
        f"{len(h.pods)} pods read, none on the path restarting or not ready",
        (f"cluster/health.json collected {h.collected}",)
        + (("metrics.k8s.io not served: no usage figures",) if h.metrics is None else ()),
    )

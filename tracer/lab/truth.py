"""What a scenario run's configuration and kernel make true, written into its run directory.

Pure: the scenario (its configuration), curl's results, the nodes' conntrack tables and what the
run's add-ons logged go in; the manifest, with the lab's ground truth under `extra.lab`, comes out.
Ground truth comes from the configuration and the kernel, never from the analyzer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tracer.lab import mesh, sockbpf
from tracer.lab.runner import Completed
from tracer.lab.scenarios import MoreRequest, Scenario
from tracer.lab.services import all_services
from tracer.lab.topology import Topology
from tracer.model import CapturePoint, Endpoint, Tuple5
from tracer.rules.conntrack import parse_conntrack
from tracer.rundir import Manifest
from tracer.rundir import Service as RunService
from tracer.rundir import ServiceEndpoint as RunEndpoint
from tracer.rundir import ServicePort as RunPort


@dataclass(frozen=True)
class Observed:
    """What one scenario run saw: curl's result for the request and for the further ones, when
    the request was sent, each point's capture, each node's conntrack table, the sidecars'
    connection records and the socket load-balancer's map."""

    request: Completed
    started_ns: int
    finished_ns: int
    more: tuple[tuple[MoreRequest, Completed], ...]
    points: tuple[CapturePoint, ...]
    conntrack: dict[str, str]
    sidecar_logs: dict[str, list[dict[str, Any]]]
    socket_lb_map: tuple[tuple[tuple[str, int, str], tuple[str, int]], ...]


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


def run_services(topo: Topology) -> tuple[RunService, ...]:
    """Every Service of the lab's API, as the run directory records Services."""
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


def _output(res: Completed) -> str:
    """What curl printed, its progress and errors (-v, -sS) included."""
    return (res.stdout + res.stderr).strip()


def more_truth(extra: MoreRequest, res: Completed) -> dict[str, Any]:
    """What the configuration and the kernel (through curl's result) make of a further request."""
    output = _output(res)
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


def scenario_truth(sc: Scenario, mode: str | None, seen: Observed) -> dict[str, Any]:
    """The lab's ground truth of one run (the manifest's `extra.lab`)."""
    outcome = outcome_of(seen.request.returncode, _output(seen.request))
    truth: dict[str, Any] = {
        "scenario": sc.name,
        "description": sc.description,
        "mode": mode,
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
                for k, v in seen.socket_lb_map
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
        truth["sidecars"] = {pod: seen.sidecar_logs.get(pod, []) for pod in sc.sidecars}
    if sc.snat_node:
        translations.append(
            {"kind": "SNAT", "node": sc.snat_node, "to": "node address (masquerade --random-fully)"}
        )
    truth["expected_translations"] = translations
    if seen.more:
        truth["requests"] = [more_truth(extra, r) for extra, r in seen.more]
    if sc.conntrack_node and sc.frontend:
        ip, _, port = sc.frontend.rpartition(":")
        ip = ip.strip("[]")  # [IPv6]:port
        proto = "udp" if sc.frontend.endswith(":53") else "tcp"
        truth["conntrack"] = parse_conntrack_entry(
            seen.conntrack[sc.conntrack_node], ip, int(port), proto
        )

    return truth


def run_manifest(
    sc: Scenario, topo: Topology, mode: str | None, seen: Observed, created: str
) -> Manifest:
    """The run directory's manifest: the points, the cluster's Services, the request and what
    curl said of it, warnings where curl saw what the configuration does not allow, and the
    lab's ground truth."""
    res = seen.request
    output = _output(res)
    truth = scenario_truth(sc, mode, seen)
    warnings = [
        f"request {' '.join(r['command'][-1:])}: curl's {r['curl']!r} is not what the "
        f"configuration allows"
        for r in truth.get("requests", ())
        if r["outcome"] is None
    ]
    outcome = truth["outcome"]
    if outcome != sc.expect_outcome:
        warnings.append(
            f"outcome {outcome!r} differs from the scenario's expected {sc.expect_outcome!r}"
        )
    return Manifest(
        source="lab",
        created=created,
        points=seen.points,
        services=run_services(topo),
        request={
            "command": [*sc.command],
            "netns": sc.client_netns,
            "exit_code": res.returncode,
            "output": output[-2000:],
            "started_ns": seen.started_ns,
            "finished_ns": seen.finished_ns,
        },
        warnings=tuple(warnings),
        extra={"lab": truth},
    )

"""The trace pipeline on the recorded lab runs (pcaps/): what it finds is held to the lab's own
truth (its configuration and the node's conntrack entry, in each manifest's `extra.lab`)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.explain.runs import PCAPS, SCENARIOS, truth
from tracer.correlate import select
from tracer.errors import NothingMatchedError
from tracer.inputs import load_points, load_run
from tracer.model import Endpoint
from tracer.trace import list_connections, open_run, request_path, require_connections, trace


def _ep(ep: Endpoint) -> str:
    return f"[{ep.ip}]:{ep.port}" if ":" in ep.ip else f"{ep.ip}:{ep.port}"


DNAT_RUNS = [s for s in SCENARIOS if (truth(s).get("conntrack") or {}).get("dnat_to")]


@pytest.mark.parametrize("scenario", DNAT_RUNS)
def test_trace_shows_the_dnat_conntrack_recorded(scenario: str) -> None:
    """The traced request's forward path holds the DNAT the node's conntrack entry recorded:
    from the address the client asked for to the backend kube-proxy chose."""
    t = truth(scenario)
    ct = t["conntrack"]
    run = open_run(load_run(PCAPS / scenario))
    traced = trace(run, select(run.correlation))
    dnats = [
        (_ep(h.translation.before.dst), _ep(h.translation.after.dst))
        for h in traced.path.forward
        if h.translation is not None and h.translation.kind in ("DNAT", "DNAT+SNAT")
    ]
    asked = f"{ct['original']['dst']}:{ct['original']['dport']}"
    if ":" in ct["original"]["dst"]:
        asked = f"[{ct['original']['dst']}]:{ct['original']['dport']}"
    if scenario == "ingress-hostnet":
        # nginx runs in node1's own namespace: its connection is rewritten in nat OUTPUT
        # before any capture sees it, so no hop shows the DNAT; the backend is still the one
        # conntrack recorded, and the rule evidence says which rule chose it.
        assert traced.path.request.backend == ct["dnat_to"]
    else:
        assert (asked, _bracket(ct["dnat_to"])) in dnats
    # The node facts were read, so every rewrite has its rule evidence.
    assert traced.evidence is not None and traced.evidence.rewrites


def _bracket(hostport: str) -> str:
    host, _, port = hostport.rpartition(":")
    return f"[{host}]:{port}" if ":" in host and not host.startswith("[") else hostport


def test_a_proxied_request_is_traced_to_the_backend_behind_the_proxy() -> None:
    """Through the ingress controller: one path from the external client to the pod that
    served it (the second leg the lab noted), with the proxy's hop marked."""
    t = truth("ingress")
    run = open_run(load_run(PCAPS / "ingress"))
    traced = trace(run, select(run.correlation))
    assert traced.path.stitches, "the two connections are joined"
    second_leg_backend = t["notes"][0].rsplit("-> ", 1)[1]
    assert traced.path.request.backend == second_leg_backend
    assert any(h.kind == "proxy" for h in traced.path.forward)
    # The summary and the journeys are the client's (the first leg's).
    first = run.correlation.connection(traced.path.stitches[0].client_leg)
    assert traced.journeys == first.journeys
    assert traced.path.request.summary.startswith("HTTP GET")


def test_bare_point_files_have_no_facts_and_no_evidence(tmp_path: Path) -> None:
    """Captures named with --point have no run directory: no node facts, no rule evidence,
    and the path is still traced."""
    src = PCAPS / "clusterip"
    manifest = load_run(src).manifest
    assert manifest is not None
    specs = []
    for p in manifest.points:
        f = tmp_path / Path(p.file).name
        shutil.copy(src / p.file, f)
        node = f"@{p.node}" if p.node else ""
        specs.append(f"{p.role}:{p.name}{node}={f}")
    run = open_run(load_points(specs, ()))
    assert run.facts == {}
    traced = trace(run, select(run.correlation))
    assert traced.evidence is None
    assert traced.path.request.backend == truth("clusterip")["backend"]


def test_request_path_is_the_traced_path_before_its_summary_and_warnings() -> None:
    run = open_run(load_run(PCAPS / "ingress"))
    conn = select(run.correlation)
    traced = trace(run, conn)
    bare = request_path(run, conn)
    assert bare.forward == traced.path.forward and bare.stitches == traced.path.stitches


@pytest.mark.parametrize("scenario", ["drop", "stale-endpoint", "clusterip-remote", "slow-server"])
def test_the_listing_marks_failed_exactly_the_runs_that_failed(scenario: str) -> None:
    """`--failed` keeps the request exactly when the lab saw it fail."""
    t = truth(scenario)
    run = open_run(load_run(PCAPS / scenario))
    every = list_connections(run)
    failed = list_connections(run, failed=True)
    assert len(every.rows) >= 1 and len(failed.rows) <= len(every.rows)
    client_port = int(t["conntrack"]["original"]["sport"])
    table = every.table
    request_rows = [int(r) for r in every.rows if int(table.sport[r]) == client_port]
    assert len(request_rows) == 1
    is_failed = request_rows[0] in {int(r) for r in failed.rows}
    assert is_failed == (t["outcome"] != "http-200")


def test_a_run_without_connections_says_so(tmp_path: Path) -> None:
    src = PCAPS / "clusterip"
    run_dir = tmp_path / "run"
    shutil.copytree(src, run_dir)
    manifest = load_run(run_dir).manifest
    assert manifest is not None
    for p in manifest.points:  # keep each file's header, drop every packet
        f = run_dir / p.file
        f.write_bytes(f.read_bytes()[:24])
    run = open_run(load_run(run_dir))
    with pytest.raises(NothingMatchedError, match="no connection found"):
        require_connections(run)

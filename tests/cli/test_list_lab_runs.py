"""`analyze --list` on every recorded lab run: each connection's outcome against the lab's truth.

The truth is the run's manifest (`extra.lab`): what curl got from the kernel, the configured
break point of each fault, the backend kube-proxy DNATs to. Never the analyzer's own output.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tracer.cli import main

PCAPS = Path(__file__).resolve().parents[2] / "pcaps"
RUNS = sorted(p.name for p in PCAPS.iterdir() if (p / "manifest.json").is_file())
# curl's result -> the outcome of the request's connection.
OUTCOME = {
    "http-200": "ok",
    "nxdomain": "ok",  # DNS answered (NXDOMAIN is an answer): the listing shows the rcode
    "refused": "rejected",  # kube-proxy's REJECT: ICMP port unreachable
    "unreachable": "rejected",  # ICMP host unreachable
    "timeout": "unanswered",
}


def _listing(capsys: pytest.CaptureFixture[str], run: str, *args: str) -> Any:
    with pytest.raises(SystemExit) as e:
        main(["analyze", str(PCAPS / run), "--list", "--format", "json", *args])
    out, err = capsys.readouterr()
    assert (e.value.code or 0) == 0, err
    return json.loads(out)


@pytest.mark.parametrize("run", RUNS)
def test_every_connection_has_its_true_outcome(
    capsys: pytest.CaptureFixture[str], run: str
) -> None:
    manifest = json.loads((PCAPS / run / "manifest.json").read_text())
    truth = manifest["extra"]["lab"]
    rows = _listing(capsys, run)["connections"]
    want = OUTCOME[truth["outcome"]]
    request = [r for r in rows if r["destination"] == truth["frontend"]]
    translated = False
    if not request and truth["backend"]:
        # Translated before any capture point saw it (nginx in a node's own namespace behind
        # nat OUTPUT, an eBPF socket load-balancer at connect()): it leaves for the backend.
        request = [r for r in rows if r["destination"] == truth["backend"]]
        translated = True
    # The DNS lookups that gave the client its destination were answered; the request itself
    # ended as curl says, where the lab's configuration says it breaks.
    for r in rows:
        if r not in request:
            assert r["outcome"] == "ok", r
    assert request, rows
    last = truth["expected_path"][-1]
    proxies = [p["name"] for p in manifest["points"] if p["role"] == "ingress"]
    if proxies:
        # Through an L7 proxy the client's own connection ends at the proxy (its backend).
        last = proxies[0]
    for r in request:
        assert r["outcome"] == want, r
        assert r["last_point"] == last, r
        if want == "ok" and truth["backend"]:
            assert translated or r["backend"] == truth["backend"], r
            assert r["outcome_by"]["address"] == truth["backend"].rpartition(":")[0].strip("[]"), r
        if want == "rejected":
            # The ICMP error was made on the node where the request stopped.
            assert r["outcome_by"]["point"] == last and r["outcome_by"]["node"] == last, r
        if want == "unanswered":
            assert r["outcome_by"] is None and r["retransmissions"] >= 1, r
    failed = _listing(capsys, run, "--failed")["connections"]
    assert [r["index"] for r in failed] == [r["index"] for r in rows if r["outcome"] != "ok"]

"""`pathtrace diagnose` as a user runs it: offline on recorded runs, live against the stand-in API."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tracer.apiserver import Server, serve
from tracer.apiserver.fakes import fake_exec_backend, sample_state
from tracer.cli import main

PCAPS = Path(__file__).resolve().parents[2] / "pcaps"


def _run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as e:
        main(args)
    out, err = capsys.readouterr()
    return int(e.value.code or 0), out, err


def test_a_problem_exits_4_with_the_cause_first(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(["diagnose", str(PCAPS / "no-endpoints")], capsys)
    assert code == 4
    first = next(line for line in out.splitlines() if line.startswith("1. "))
    assert "ERROR" in first and "step 4" in first and "default/web-empty" in first
    assert "next:" in out


def test_a_healthy_run_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(["diagnose", str(PCAPS / "clusterip")], capsys)
    assert code == 0
    assert "No problem found." in out


def test_json_schema(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(["diagnose", str(PCAPS / "dns-nxdomain"), "--format", "json"], capsys)
    assert code == 4
    doc = json.loads(out)
    assert doc["schema"] == "pathtrace-diagnose/v1"
    top = doc["findings"][0]
    assert set(top) == {"severity", "step", "title", "evidence", "next", "follows"}
    assert (top["severity"], top["step"]) == ("error", 3)
    assert doc["request"]["destination"] == "10.96.0.10:53"


def test_connection_choice(capsys: pytest.CaptureFixture[str]) -> None:
    # Connection 0 of this run is the DNS lookup, which succeeded.
    code, out, _ = _run(
        ["diagnose", str(PCAPS / "clusterip"), "--connection", "0", "--format", "json"], capsys
    )
    assert code == 0
    assert json.loads(out)["request"]["destination"] == "10.96.0.10:53"


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["diagnose"], 2, "nothing to diagnose"),
        (["diagnose", "RUN", "--from", "pod/client"], 2, "not both"),
        (["diagnose", "--from", "pod/client"], 2, "both --from and --to"),
        (["diagnose", "x", "--connection", "1", "--match", "proto=tcp"], 2, "not both"),
        (["diagnose", "/nonexistent/run"], 1, "/nonexistent/run"),
        (["diagnose", "RUN", "--slow", "nan"], 2, "'--slow': nan is not a number"),
        (["diagnose", "RUN", "--slow", "inf"], 2, "'--slow': inf is not a number"),
        (["diagnose", "RUN", "--slow", "-1"], 2, "--slow"),
    ],
)
def test_usage_and_input_errors(
    args: list[str], code: int, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    got, _, err = _run(args, capsys)
    assert got == code
    assert message in err and "Traceback" not in err


def test_unknown_connection_exits_3(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(["diagnose", str(PCAPS / "clusterip"), "--connection", "99"], capsys)
    assert code == 3 and "no connection 99" in err


@pytest.fixture
def server() -> Iterator[Server]:
    with serve(sample_state(), fake_exec_backend()) as s:
        yield s


def test_live_equals_offline(
    server: Server, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    live = [
        "diagnose",
        "--kubeconfig",
        str(server.kubeconfig_path),
        "--from",
        "pod/client",
        "--to",
        "svc/web",
        "--request",
        "curl -s http://web/",
        "-o",
        str(run),
        "--format",
        "json",
    ]
    code, out, err = _run(live, capsys)
    assert code in (0, 4), err
    assert (run / "cluster" / "health.json").is_file()  # the capture saved the health facts
    live_doc = json.loads(out)
    code2, out2, _ = _run(["diagnose", str(run), "--format", "json"], capsys)
    assert code2 == code
    assert json.loads(out2) == live_doc
    # The health facts were read: step 1 speaks of the stand-in's two Ready nodes.
    step1 = [f for f in live_doc["findings"] if f["step"] == 1]
    assert any("2/2 nodes Ready" in f["title"] for f in step1)


@pytest.mark.parametrize(
    ("run", "cause_step", "signs"),
    [("no-endpoints", 4, 2), ("stale-endpoint", 4, 2), ("drop", 6, 1)],
)
def test_one_cause_is_one_problem(
    capsys: pytest.CaptureFixture[str], run: str, cause_step: int, signs: int
) -> None:
    code, out, _ = _run(["diagnose", str(PCAPS / run)], capsys)
    assert code == 4
    assert "1 problem found; the most likely cause first" in out
    assert f"({signs} finding" in out
    assert f"1. ERROR   step {cause_step} " in out
    assert out.count("follows from 1: the same cause") == signs
    code, out, _ = _run(["diagnose", str(PCAPS / run), "--format", "json"], capsys)
    doc = json.loads(out)
    assert [f["follows"] for f in doc["findings"]].count(1) == signs
    assert doc["findings"][0]["follows"] is None


def test_hash_numbers_only_connections(capsys: pytest.CaptureFixture[str]) -> None:
    import re

    _, out, _ = _run(["diagnose", str(PCAPS / "drop")], capsys)
    request = re.search(r"Request #(\d+)", out)
    assert request is not None
    # Every "#N" is a connection number (the request's here); sends are named, not numbered.
    assert set(re.findall(r"#(\d+)", out)) == {request.group(1)}
    assert "syn, first send: last seen" in out and "syn, retransmission 3: last seen" in out


@pytest.mark.parametrize(
    ("run", "line"),
    [
        ("no-endpoints", "Connections: 1 of 2 connections failed: 1 rejected by node1 ("),
        ("stale-endpoint", "Connections: 1 of 2 connections failed: 1 rejected by node2 ("),
        ("clusterip", "Connections: 2 connections, none failed"),
    ],
)
def test_how_every_connection_ended_heads_the_diagnosis(
    capsys: pytest.CaptureFixture[str], run: str, line: str
) -> None:
    # The lab's truth: kube-proxy's REJECT on node1 (no endpoints), host unreachable from node2
    # (stale endpoint); the DNS lookup before each request was answered.
    truth = json.loads((PCAPS / run / "manifest.json").read_text())["extra"]["lab"]
    assert truth["outcome"] in ("refused", "unreachable", "http-200")
    _, out, _ = _run(["diagnose", str(PCAPS / run)], capsys)
    assert any(x.startswith(line) for x in out.splitlines()[:4]), out
    _, out, _ = _run(["diagnose", str(PCAPS / run), "--format", "json"], capsys)
    assert json.loads(out)["connections"].startswith(line.removeprefix("Connections: "))


def test_html_report_puts_the_findings_first(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    page = tmp_path / "d.html"
    code, out, err = _run(["diagnose", str(PCAPS / "no-endpoints"), "--html", str(page)], capsys)
    assert code == 4, err
    assert "1. ERROR" in out  # the text is still printed
    text = page.read_text(encoding="utf-8")
    assert text.index('id="findings"') < text.index('id="ladder"')
    assert "default/web-empty" in text[text.index('id="findings"') :]
    assert 'id="break"' in text  # the REJECT: nothing came back but an ICMP error

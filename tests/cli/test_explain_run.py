"""`pathtrace explain RUN` as a user runs it: exit codes, text and JSON, no tracebacks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tracer.cli import main

PCAPS = Path(__file__).resolve().parents[2] / "pcaps"


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as e:
        main(["explain", *args])
    out, err = capsys.readouterr()
    return int(e.value.code or 0), out, err


def test_explain_run_tells_the_story(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, str(PCAPS / "clusterip"))
    assert code == 0
    assert "1. DNS lookup" in out
    assert "DNAT by kube-proxy on node1" in out
    assert "10.244.1.3:8080" in out
    assert "Outcome: HTTP GET / (Host web) -> 200" in out


def test_explain_run_json(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, str(PCAPS / "no-endpoints"), "--format", "json")
    assert code == 0
    data = json.loads(out)
    assert data["access"] == "clusterip"
    assert "has no endpoints for default/web-empty" in data["outcome"]


def test_packet_with_a_run_directory_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, str(PCAPS / "clusterip"), "--packet", "tcp 1.2.3.4:5 > 10.96.0.1:80")
    assert code == 2
    assert "Traceback" not in err


def test_missing_path_is_an_error(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = run(capsys, str(tmp_path / "nope"))
    assert code == 1
    assert "no such file or directory" in err


def test_directory_without_manifest_is_an_error(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, _, err = run(capsys, str(tmp_path))
    assert code == 1
    assert "manifest.json" in err
    assert "Traceback" not in err


def test_explain_run_html_holds_the_story(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    page = tmp_path / "e.html"
    code, out, err = run(capsys, str(PCAPS / "clusterip"), "--html", str(page))
    assert code == 0, err
    text = page.read_text(encoding="utf-8")
    assert 'id="story"' in text and "1. DNS lookup" in text
    assert 'id="ladder"' in text


def test_html_is_for_a_run_directory(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    rules = tmp_path / "iptables-save.txt"
    rules.write_text("*nat\nCOMMIT\n")
    code, _, err = run(
        capsys, str(rules), "--packet", "tcp 10.0.0.1:1 > 10.0.0.2:80", "--html", "x.html"
    )
    assert code == 2
    assert "--html writes the report of a run directory" in err

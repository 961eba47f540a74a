"""`pathtrace lab` and `pathtrace demo` as a user meets them: messages and exit codes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tracer.cli import main
from tracer.lab.scenarios import scenario_names


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as e:
        main(list(args))
    out, err = capsys.readouterr()
    return int(e.value.code or 0), out, err


def test_scenarios_lists_every_scenario(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "lab", "scenarios")
    assert code == 0
    names = [line.split()[0] for line in out.splitlines()]
    assert names == list(scenario_names())
    assert all(len(line.split(None, 1)) == 2 for line in out.splitlines())


def test_unknown_scenario_names_the_known_ones(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "lab", "run", "clusterip-remot")
    assert code == 2
    assert "unknown scenario 'clusterip-remot'" in err and "clusterip-remote" in err


def test_run_without_a_lab_says_lab_up(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: object
) -> None:
    from tracer.lab import topology

    monkeypatch.setattr(topology, "STATE_DIR", tmp_path)
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setattr("tracer.lab.lab.check_prerequisites", lambda: None)
    code, _, err = run(capsys, "lab", "run", "clusterip")
    assert code == 1
    assert "not up" in err and "pathtrace lab up" in err


def test_not_root(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    code, _, err = run(capsys, "lab", "up")
    assert code == 1 and "needs root" in err
    code, _, err = run(capsys, "demo")
    assert code == 1 and "pathtrace analyze " in err
    # The hint names the shipped run by a path that exists from any working directory.
    shown = err.split("pathtrace analyze ", 1)[1].split()[0]
    assert shown.endswith("pcaps/clusterip-remote") and (Path(shown) / "manifest.json").is_file()


def test_missing_tool_names_the_package(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setattr("shutil.which", lambda tool: None if tool == "conntrack" else "/bin/x")
    code, _, err = run(capsys, "lab", "up")
    assert code == 1
    assert "conntrack" in err and "apt-get install conntrack" in err


def test_bad_mode_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "lab", "up", "--mode", "ipvs")
    assert code == 2 and "ipvs" in err


def _fake_lab(
    monkeypatch: pytest.MonkeyPatch, status: str, removed: list[str], api: dict[str, object]
) -> None:
    # No real namespace is touched: status, down and the API record are stand-ins.
    monkeypatch.setattr("tracer.lab.lab.status", lambda: {"status": status, "mode": None})
    monkeypatch.setattr("tracer.lab.lab.down", lambda log=None: list(removed))
    monkeypatch.setattr("tracer.lab.api.api_status", lambda: {"stray_pids": [], **api})


def test_down_without_a_lab_says_there_is_nothing_to_remove(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _fake_lab(monkeypatch, "down", [], {"running": False})
    code, out, _ = run(capsys, "lab", "down")
    assert code == 0
    assert out.strip() == "lab down: nothing to remove: no lab is up"


def test_down_of_a_lab_counts_what_went(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _fake_lab(monkeypatch, "up", ["pt-node1", "pt-client"], {"running": True, "pid": 4242})
    code, out, _ = run(capsys, "lab", "down")
    assert code == 0
    assert out.strip() == "lab down: removed 2 namespaces/links and the lab API"


def test_down_of_a_half_built_lab_is_not_nothing(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _fake_lab(monkeypatch, "half-built", [], {"running": False})
    code, out, _ = run(capsys, "lab", "down")
    assert code == 0 and "nothing to remove" not in out and "state file" in out

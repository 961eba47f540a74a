"""`pathtrace capture` and `pathtrace cleanup` as a user runs them, against the stand-in API."""

from __future__ import annotations

import json
import shlex
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client, config

from tracer.apiserver import Server, serve
from tracer.apiserver.fakes import fake_exec_backend, sample_state
from tracer.cli import main


@pytest.fixture
def server() -> Iterator[Server]:
    with serve(sample_state(), fake_exec_backend()) as s:
        yield s


def _run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as e:
        main(args)
    out, err = capsys.readouterr()
    return int(e.value.code or 0), out, err


def _managed_pods(s: Server) -> list[str]:
    core = client.CoreV1Api(config.new_client_from_config(str(s.kubeconfig_path)))
    pods = core.list_pod_for_all_namespaces(label_selector="app.kubernetes.io/managed-by=pathtrace")
    return [p.metadata.name for p in pods.items]


def _capture(s: Server, tmp_path: Path, *extra: str) -> list[str]:
    return [
        "capture",
        "--kubeconfig",
        str(s.kubeconfig_path),
        "--from",
        "pod/client",
        "--to",
        "svc/web",
        "-o",
        str(tmp_path / "run"),
        "--no-analyze",
        *extra,
    ]


def test_capture_with_request(
    server: Server, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = _run(_capture(server, tmp_path, "--request", "curl -s http://web/"), capsys)
    assert code == 0, err
    m = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert {p["role"] for p in m["points"]} == {"client", "dns", "server", "node"}
    assert m["request"]["argv"] == ["curl", "-s", "http://web/"]
    assert "cannot be removed" in err
    assert _managed_pods(server) == []


def test_external_request_runs_on_this_machine(
    server: Server, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    marker = tmp_path / "ran-here"
    script = f"open({str(marker)!r}, 'w').write('x'); print('from outside'); raise SystemExit(3)"
    request = shlex.join([sys.executable, "-c", script])
    args = _capture(server, tmp_path, "--request", request)
    args[args.index("pod/client")] = "external"
    code, _, err = _run(args, capsys)
    assert code == 0, err
    assert marker.read_text() == "x"  # the file exists here: it did not run in a pod
    m = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert "client" not in {p["role"] for p in m["points"]}
    req = m["request"]
    assert req["argv"] == [sys.executable, "-c", script]
    assert (req["host"], req["exit_code"], req["stdout"]) == (
        socket.gethostname(),
        3,
        "from outside\n",
    )
    assert "point" not in req
    assert "the request exited with 3" in err
    assert _managed_pods(server) == []


def test_capture_html_report(
    server: Server, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = _capture(server, tmp_path, "--request", "curl -s http://web/")
    args.remove("--no-analyze")
    code, _, err = _run([*args, "--html", str(tmp_path / "r.html")], capsys)
    assert code == 0, err
    assert f"wrote {tmp_path / 'r.html'}" in err
    assert (tmp_path / "r.html").read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    code, _, err = _run(
        [*_capture(server, tmp_path, "--request", "true"), "--html", "r.html"], capsys
    )
    assert code == 2 and "--no-analyze" in err
    assert _managed_pods(server) == []


def test_dry_run_creates_nothing(
    server: Server, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = _run(_capture(server, tmp_path, "--duration", "5", "--dry-run"), capsys)
    assert code == 0
    plan = json.loads(out)
    assert [p["name"] for p in plan["points"]] == ["client", "server-web-1", "node-n1", "node-n2"]
    assert not any(m == "POST" or m == "PATCH" for m, _ in server.requests)


def test_rbac_denied_everywhere_is_a_clear_error(
    server: Server, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    server.denials.deny("create", "pods/exec")
    code, _, err = _run(_capture(server, tmp_path, "--duration", "1"), capsys)
    assert code == 1
    assert "nothing can be captured" in err
    assert "create pods/exec in namespace default" in err
    assert "Traceback" not in err
    assert _managed_pods(server) == []


def test_namespace_forbidding_host_network_falls_back_to_pods(
    server: Server, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    server.set_namespace_labels("ops", {"pod-security.kubernetes.io/enforce": "baseline"})
    code, _, err = _run(
        _capture(server, tmp_path, "--duration", "0.5", "--node-namespace", "ops"), capsys
    )
    assert code == 0, err
    assert 'node capture refused: namespace ops enforces Pod Security "baseline"' in err
    m = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert [p["role"] for p in m["points"]] == ["client", "server"]
    assert any("node capture refused" in w for w in m["warnings"])
    assert _managed_pods(server) == []


def test_usage_errors_exit_2(
    server: Server, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = _run(_capture(server, tmp_path), capsys)
    assert code == 2 and "--request" in err
    code, _, err = _run(_capture(server, tmp_path, "--request", "curl 'x"), capsys)
    assert code == 2 and "No closing quotation" in err


def test_cleanup_deletes_leftovers_and_lists_ephemeral(
    server: Server, capsys: pytest.CaptureFixture[str]
) -> None:
    core = client.CoreV1Api(config.new_client_from_config(str(server.kubeconfig_path)))
    core.create_namespaced_pod(
        "default",
        {
            "metadata": {
                "name": "pathtrace-r1-node-0",
                "labels": {"app.kubernetes.io/managed-by": "pathtrace", "pathtrace.io/run": "r1"},
            },
            "spec": {
                "nodeName": "n1",
                "hostNetwork": True,
                "containers": [{"name": "capture", "image": "x", "command": ["sleep", "30"]}],
            },
        },
    )
    core.patch_namespaced_pod_ephemeralcontainers(
        "web-1",
        "default",
        {"spec": {"ephemeralContainers": [{"name": "pathtrace-r1-0", "image": "x"}]}},
    )
    code, out, _ = _run(["cleanup", "--kubeconfig", str(server.kubeconfig_path), "-A"], capsys)
    assert code == 0
    assert "deleted pod default/pathtrace-r1-node-0" in out
    assert "cannot remove ephemeral container pathtrace-r1-0 from pod default/web-1" in out
    assert _managed_pods(server) == []

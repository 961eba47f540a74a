"""`pathtrace capture` and `pathtrace cleanup` as a user runs them, against the stand-in API."""

from __future__ import annotations

import json
import shlex
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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


def _core(s: Server) -> client.CoreV1Api:
    return client.CoreV1Api(config.new_client_from_config(str(s.kubeconfig_path)))


def _managed_pods(s: Server) -> list[str]:
    core = _core(s)
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
    assert {p["role"] for p in m["points"]} == {"client", "server", "node"}
    assert m["request"]["argv"] == ["curl", "-s", "http://web/"]
    assert "permanent" in err
    assert _managed_pods(server) == []
    # Only the named pods got a container; kube-system was never written to.
    assert {e["pod"] for e in m["extra"]["ephemeral_containers"]} == {"client", "web-1"}
    assert not any(m != "GET" and "/namespaces/kube-system/" in path for m, path in server.requests)
    coredns = _core(server).read_namespaced_pod("coredns-1", "kube-system")
    assert not coredns.spec.ephemeral_containers
    # The lookup still names its Service and pods, as lab runs do.
    assert "kube-dns" in {s["name"] for s in m["services"]}
    # Where it writes, said first, in full.
    assert f"writing {tmp_path / 'run'}" in err


def test_capture_dns_pods_is_an_explicit_opt_in(
    server: Server, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = _capture(server, tmp_path, "--request", "curl -s http://web/", "--capture-dns-pods")
    code, _, err = _run(args, capsys)
    assert code == 0, err
    m = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert "coredns-1" in {p["name"] for p in m["points"]}
    assert "kube-system/coredns-1" in err and "permanent" in err
    coredns = _core(server).read_namespaced_pod("coredns-1", "kube-system")
    assert [c.name for c in coredns.spec.ephemeral_containers] == [
        e["container"] for e in m["extra"]["ephemeral_containers"] if e["pod"] == "coredns-1"
    ]


def test_default_run_directory_is_named_by_the_run_id(
    server: Server,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    args = _capture(server, tmp_path, "--duration", "0.2")
    i = args.index("-o")
    del args[i : i + 2]
    code, _, err = _run(args, capsys)
    assert code == 0, err
    (run,) = tmp_path.glob("pathtrace-*")
    m = json.loads((run / "manifest.json").read_text())
    assert run.name == f"pathtrace-{m['extra']['run_id']}"
    assert f"run {m['extra']['run_id']}: writing {run}" in err
    assert f"run directory: {run}" in err


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
    code, out, err = _run(_capture(server, tmp_path, "--duration", "5", "--dry-run"), capsys)
    assert code == 0
    plan = json.loads(out)
    assert [p["name"] for p in plan["points"]] == ["client", "web-1", "n1", "n2"]
    assert not any(m == "POST" or m == "PATCH" for m, _ in server.requests)
    # Every pod that would get a permanent container is named, in the JSON and for people.
    assert [c.split(":")[0] for c in plan["changes"]["permanent_ephemeral_containers"]] == [
        "default/client",
        "default/web-1",
    ]
    assert (
        "dry run: the capture adds an ephemeral container to default/client, default/web-1" in err
    )


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


def test_cleanup_run_from_its_record_in_every_namespace(
    server: Server,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A run that died after creating its objects: `cleanup RUN` removes them from the record,
    in each namespace it touched (node pods in ops, containers in default and kube-system)."""
    from tracer.capture import backend

    real_setup = backend.KubernetesBackend.setup

    def setup_then_die(self: backend.KubernetesBackend, plan: Any) -> None:
        real_setup(self, plan)
        self.created.clear()  # as if the process were killed: nothing deletes them
        raise KeyboardInterrupt

    monkeypatch.setattr(backend.KubernetesBackend, "setup", setup_then_die)
    args = _capture(
        server,
        tmp_path,
        "--request",
        "curl -s http://web/",
        "--node-namespace",
        "ops",
        "--capture-dns-pods",
    )
    with pytest.raises((SystemExit, KeyboardInterrupt)):
        main(args)
    capsys.readouterr()
    run = tmp_path / "run"
    left = sorted(_managed_pods(server))
    assert left and all(n.startswith("pathtrace-") for n in left)
    code, out, err = _run(
        ["cleanup", str(run), "--kubeconfig", str(server.kubeconfig_path)], capsys
    )
    assert code == 0, err
    for name in left:
        assert f"deleted pod ops/{name}" in out
    assert _managed_pods(server) == []
    assert "from pod kube-system/coredns-1" in out and "from pod default/client" in out
    # A second time: nothing left to delete, the containers still reported.
    code, out, _ = _run(["cleanup", str(run), "--kubeconfig", str(server.kubeconfig_path)], capsys)
    assert code == 0
    assert "already deleted" in out and "cannot remove ephemeral container" in out


def test_incident_mode_usage_errors_exit_2(
    server: Server, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for extra, says in (
        (["--until", "boom"], "unknown condition 'boom'"),
        (["--until", "slower"], "slower needs a duration"),
        (["--until", "failed", "--ring-bytes", "1K"], "at least 64K"),
        (["--until", "failed", "--ring-bytes", "lots"], "expected a size"),
        (["--until", "failed", "--max-bytes", "4096"], "--max-bytes"),
        (["--until", "failed", "--repeat", "3"], "give --request"),
        (["--request", "curl -s http://web/", "--repeat", "3"], "--repeat needs --until"),
        (["--duration", "5", "--discard-if-quiet"], "--discard-if-quiet needs --until"),
    ):
        code, _, err = _run(_capture(server, tmp_path, *extra), capsys)
        assert code == 2 and says in err, (extra, err)
    assert _managed_pods(server) == []


def test_incident_mode_quiet_exits_5(
    server: Server, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The stand-in tcpdump sends data segments of one healthy connection: nothing fails.
    args = _capture(server, tmp_path, "--until", "reset", "--duration", "1", "--keep-before", "1")
    code, _, err = _run(args, capsys)
    assert code == 5, err
    assert "the condition did not hold in 1 s" in err
    m = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert m["extra"]["outcome"] == "quiet" and m["extra"]["until"]["condition"] == "reset"
    assert all(p["packets"] > 0 for p in m["points"])
    assert _managed_pods(server) == []
    gone = tmp_path / "gone"
    args = [*_capture(server, tmp_path, "--until", "reset", "--duration", "1")]
    args[args.index(str(tmp_path / "run"))] = str(gone)
    code, _, err = _run([*args, "--discard-if-quiet"], capsys)
    assert code == 5 and "nothing kept" in err and not gone.exists()
    assert _managed_pods(server) == []

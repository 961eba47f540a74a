"""The official kubectl against the stand-in serving a small sample cluster (no root, no lab):
what needs a test hook (RBAC denials) or runs commands on this machine."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.apiserver.test_kubectl import kubectl_binary, rows
from tracer.apiserver import LocalExecBackend, Server, serve
from tracer.apiserver.fakes import sample_state


@pytest.fixture
def env(tmp_path: Path) -> Iterator[dict[str, Any]]:
    binary = kubectl_binary()
    s = serve(sample_state(), LocalExecBackend())
    try:
        yield {"server": s, "kubectl": binary, "home": tmp_path}
    finally:
        s.close()


def run(
    env: dict[str, Any], *args: str, stdin: str | None = None, spdy: bool = False
) -> subprocess.CompletedProcess[str]:
    s: Server = env["server"]
    variables = {
        "HOME": str(env["home"]),
        "KUBECONFIG": str(s.kubeconfig_path),
        "PATH": "/usr/bin:/bin",
    }
    if spdy:
        variables["KUBECTL_REMOTE_COMMAND_WEBSOCKETS"] = "false"
    return subprocess.run(
        [env["kubectl"], *args],
        capture_output=True,
        text=True,
        env=variables,
        input=stdin,
        timeout=60,
    )


def test_auth_can_i_follows_the_rbac_rules(env: dict[str, Any]) -> None:
    # kubectl sends this review only as protobuf: the answers prove the body was read.
    sub = ("auth", "can-i", "create", "pods", "--subresource=ephemeralcontainers")
    assert run(env, *sub).stdout == "yes\n"
    env["server"].denials.deny("create", "pods/ephemeralcontainers", "default")
    r = run(env, *sub)
    assert (r.returncode, r.stdout) == (1, "no\n")
    assert run(env, *sub, "-n", "kube-system").stdout == "yes\n"
    # TYPE/NAME: kubectl asks about a pod named "ephemeralcontainers", which create pods allows.
    assert run(env, "auth", "can-i", "create", "pods/ephemeralcontainers").stdout == "yes\n"
    env["server"].denials.deny("create", "pods", "default")
    assert run(env, "auth", "can-i", "create", "pods/ephemeralcontainers").stdout == "no\n"


def test_forbidden_and_missing_read_as_from_a_real_server(env: dict[str, Any]) -> None:
    env["server"].denials.deny("list", "pods")
    r = run(env, "get", "pods")
    assert r.returncode == 1
    assert "Error from server (Forbidden)" in r.stderr and 'cannot list resource "pods"' in r.stderr
    r = run(env, "get", "pod", "nope", "-n", "kube-system")
    assert 'Error from server (NotFound): pods "nope" not found' in r.stderr


def test_unauthenticated_kubectl_is_told_to_log_in(env: dict[str, Any], tmp_path: Path) -> None:
    s: Server = env["server"]
    cfg = tmp_path / "wrong-token"
    cfg.write_text(s.kubeconfig_path.read_text().replace(s.token, "not-the-token"))
    r = subprocess.run(
        [env["kubectl"], "get", "nodes"],
        capture_output=True,
        text=True,
        env={"HOME": str(tmp_path), "KUBECONFIG": str(cfg), "PATH": "/usr/bin:/bin"},
        timeout=60,
    )
    assert r.returncode == 1
    assert "You must be logged in to the server" in r.stderr


def test_watch_delete_and_events(env: dict[str, Any]) -> None:
    assert {r[0] for r in rows(run(env, "get", "pods").stdout)} == {"client", "web-1"}
    assert run(env, "delete", "pod", "web-1", "--wait=false").returncode == 0
    assert {r[0] for r in rows(run(env, "get", "pods").stdout)} == {"client"}
    events = rows(run(env, "get", "events", "--field-selector", "reason=Killing").stdout)
    assert [(e[2], e[3]) for e in events] == [("Killing", "pod/web-1")]


def test_exec_over_spdy(env: dict[str, Any]) -> None:
    """kubectl with WebSockets turned off speaks SPDY/3.1 (v4.channel.k8s.io)."""
    r = run(env, "exec", "client", "--", "echo", "over spdy", spdy=True)
    assert (r.returncode, r.stdout) == (0, "over spdy\n")
    r = run(env, "exec", "-i", "client", "--", "cat", stdin="through stdin\n" * 5000, spdy=True)
    assert r.stdout == "through stdin\n" * 5000
    r = run(env, "exec", "client", "--", "sh", "-c", "echo oops >&2; exit 4", spdy=True)
    assert (r.returncode, r.stderr.splitlines()[0]) == (4, "oops")


def test_exec_falls_back_to_spdy_when_websockets_are_refused(tmp_path: Path) -> None:
    binary = kubectl_binary()
    with serve(sample_state(), LocalExecBackend(), protocols=()) as s:
        env = {"server": s, "kubectl": binary, "home": tmp_path}
        r = run(env, "exec", "client", "--", "echo", "fell back")
        assert (r.returncode, r.stdout) == (0, "fell back\n"), r.stderr
        # The WebSocket upgrade refused, then the same exec over SPDY.
        assert [p for _, p in s.requests if p.endswith("/exec")] == [
            "/api/v1/namespaces/default/pods/client/exec"
        ] * 2


def test_kubectl_plugin_takes_its_flags_after_its_name(env: dict[str, Any]) -> None:
    """What the README says about `kubectl pathtrace`: kubectl refuses flags before a plugin's
    name; after it (or through KUBECONFIG) they reach pathtrace."""
    s: Server = env["server"]
    variables = {"HOME": str(env["home"]), "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin"}
    plan = ["capture", "--from", "pod/client", "--to", "svc/web", "--dry-run"]

    def kubectl(*args: str, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [env["kubectl"], *args],
            capture_output=True,
            text=True,
            env={**variables, **extra},
            timeout=120,
        )

    before = kubectl("--kubeconfig", str(s.kubeconfig_path), "pathtrace", *plan)
    assert before.returncode != 0
    assert "flags cannot be placed before plugin name: --kubeconfig" in before.stderr
    after = kubectl("pathtrace", *plan, "--kubeconfig", str(s.kubeconfig_path))
    assert after.returncode == 0, after.stderr
    assert '"points"' in after.stdout
    by_env = kubectl("pathtrace", *plan, KUBECONFIG=str(s.kubeconfig_path))
    assert by_env.returncode == 0, by_env.stderr

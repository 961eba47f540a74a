"""The lab's Kubernetes API end to end: `lab up --api`, what it serves, exec, status and `lab down`.

Needs root and network namespaces (the real lab); skipped with the reason otherwise. Ground truth
comes from the lab's configuration (tracer.lab.topology, tracer.lab.scenarios) and from the kernel
(`ip` in the namespaces, /proc), never from the API's own answers.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import ssl
import stat
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.lab.conftest import netns_unavailable

pytestmark = [pytest.mark.netns, pytest.mark.slow]

BUSY_RETRIES = 5
BUSY_WAIT_S = 60.0


def run_cli(args: list[str]) -> tuple[int, str, str]:
    """`pathtrace ARGS` in this process: (exit code, stdout, stderr)."""
    import io
    from contextlib import redirect_stderr, redirect_stdout

    from tracer.cli import main

    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        try:
            main(args)
            code = 0
        except SystemExit as e:
            code = int(e.code or 0)
    return code, out.getvalue(), err.getvalue()


def lab_processes() -> dict[str, list[int]]:
    """PIDs of the lab API (by command line) and of tcpdumps inside the lab's pt- namespaces."""
    from tracer.lab.api import same_netns

    found: dict[str, list[int]] = {"api": [], "tcpdump": []}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"tracer.lab.api" in argv and same_netns(int(entry.name)):
            # Only this lab's: an API in another network namespace serves another lab.
            found["api"].append(int(entry.name))
    names = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    for ns in [line.split()[0] for line in names.splitlines() if line.startswith("pt-")]:
        pids = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True).stdout
        for pid in pids.split():
            try:
                comm = Path(f"/proc/{pid}/comm").read_text().strip()
            except OSError:
                continue
            if comm == "tcpdump":
                found["tcpdump"].append(int(pid))
    return found


@contextmanager
def lab_up_with_api(*extra: str) -> Iterator[dict[str, Any]]:
    """`pathtrace lab up --api EXTRA`, waiting while someone else's lab is up; always down after."""
    reason = netns_unavailable()
    if reason:
        pytest.skip(reason)
    from tracer.lab import lab

    for attempt in range(BUSY_RETRIES):
        if lab.status()["status"] == "down":
            code, out, err = run_cli(["lab", "up", "--api", *extra])
            if code == 0:
                break
            if "already up" not in err and "half-built" not in err:
                run_cli(["lab", "down"])
                pytest.fail(f"lab up --api failed ({code}): {err}")
        if attempt == BUSY_RETRIES - 1:
            pytest.skip("another lab is up on this machine (in use by other tests)")
        time.sleep(BUSY_WAIT_S)
    try:
        from tracer.lab.topology import read_state

        state = read_state()
        assert state is not None
        yield {"state": state, "stdout": out, "stderr": err}
    finally:
        run_cli(["lab", "down"])


@pytest.fixture(scope="module")
def lab_api() -> Iterator[dict[str, Any]]:
    with lab_up_with_api() as up:
        yield up


def _core(kubeconfig: str) -> Any:
    from kubernetes import client, config

    return client.CoreV1Api(config.new_client_from_config(kubeconfig))


def _kubeconfig(lab_api: dict[str, Any]) -> str:
    return str(lab_api["state"]["api"]["kubeconfig"])


def test_kubeconfig_is_private_and_local(lab_api: dict[str, Any]) -> None:
    path = Path(_kubeconfig(lab_api))
    assert path == Path("/run/pathtrace-lab/kubeconfig")
    assert f"kubeconfig: {path}" in lab_api["stdout"]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    cfg = json.loads(path.read_text())  # JSON is YAML: the client reads it as a kubeconfig
    assert cfg["current-context"] == "pathtrace-lab"
    ctx = next(c for c in cfg["contexts"] if c["name"] == "pathtrace-lab")
    assert ctx["context"]["namespace"] == "default"
    cluster = cfg["clusters"][0]["cluster"]
    server = cluster["server"]
    assert server.startswith("https://127.0.0.1:")
    ca = base64.b64decode(cluster["certificate-authority-data"]).decode()
    verified = ssl.create_default_context(cadata=ca)
    # Without the bearer token the API answers 401 (over TLS verified by the kubeconfig's CA).
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(f"{server}/api/v1/nodes", timeout=5, context=verified)
    assert e.value.code == 401


def test_serves_the_labs_objects(lab_api: dict[str, Any]) -> None:
    from kubernetes import client, config

    from tracer.lab.services import INGRESS_HOST, cluster_services
    from tracer.lab.topology import topology_from_json

    topo = topology_from_json(lab_api["state"]["topology"])
    api_client = config.new_client_from_config(_kubeconfig(lab_api))
    core: Any = client.CoreV1Api(api_client)
    discovery: Any = client.DiscoveryV1Api(api_client)
    networking: Any = client.NetworkingV1Api(api_client)

    nodes = {
        n.metadata.name: {a.address for a in n.status.addresses if a.type == "InternalIP"}
        for n in core.list_node().items
    }
    assert nodes == {n.name: {n.underlay_ip} for n in topo.nodes}

    pods = {
        (p.metadata.namespace, p.metadata.name): (p.status.pod_ip, p.spec.node_name)
        for p in core.list_pod_for_all_namespaces().items
    }
    assert pods == {(p.namespace, p.name): (p.ip, p.node) for p in topo.pods}

    namespaces = {ns.metadata.name for ns in core.list_namespace().items}
    assert {"default", "kube-system", "ingress-nginx"} <= namespaces

    for truth in cluster_services(topo):
        svc = core.read_namespaced_service(truth.name, truth.namespace)
        assert svc.spec.cluster_ip == truth.cluster_ip
        assert [(p.port, p.node_port) for p in svc.spec.ports] == [
            (p.port, p.node_port) for p in truth.ports
        ]
        slices = discovery.list_namespaced_endpoint_slice(
            truth.namespace, label_selector=f"kubernetes.io/service-name={truth.name}"
        )
        served = {
            (a, e.node_name, e.conditions.ready)
            for s in slices.items
            for e in s.endpoints or []
            for a in e.addresses
        }
        # Every configured endpoint, as a real API server lists it: also web-stale's, whose pod
        # does not exist.
        assert served == {(e.ip, e.node, e.ready) for e in truth.endpoints}
        if truth.name == "web-stale":
            gone = {e.pod.split("/")[1] for e in truth.endpoints if e.pod} - topo_names(topo)
            assert served and gone

    ing = networking.read_namespaced_ingress("web", "default")
    assert ing.spec.rules[0].host == INGRESS_HOST
    assert ing.spec.rules[0].http.paths[0].backend.service.name == "web-remote"


def topo_names(topo: Any) -> set[str]:
    return {p.name for p in topo.pods}


def _exec(core: Any, ns: str, pod: str, argv: list[str], container: str | None = None) -> str:
    from kubernetes.stream import stream

    kwargs: dict[str, Any] = {"command": argv, "stderr": True, "stdout": True, "stdin": False}
    if container:
        kwargs["container"] = container
    return str(stream(core.connect_get_namespaced_pod_exec, pod, ns, tty=False, **kwargs))


def _kernel_addr(netns: str) -> str:
    out = subprocess.run(
        ["ip", "-n", netns, "-4", "-o", "addr", "show", "dev", "eth0"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return out.split()[3].split("/")[0]


def test_exec_runs_in_the_pods_and_nodes_namespace(lab_api: dict[str, Any]) -> None:
    from tracer.lab.topology import topology_from_json

    topo = topology_from_json(lab_api["state"]["topology"])
    core = _core(_kubeconfig(lab_api))
    client_pod = topo.pod("client")
    out = _exec(core, "default", "client", ["ip", "-4", "-o", "addr", "show", "dev", "eth0"])
    assert f" {_kernel_addr(client_pod.netns)}/" in out
    assert f" {client_pod.ip}/" in out
    # argv, never a shell string: metacharacters arrive verbatim.
    assert _exec(core, "default", "client", ["echo", "$HOME;", "id"]).strip() == "$HOME; id"

    node = topo.nodes[1]
    name = "pathtrace-e2e-node-probe"
    core.create_namespaced_pod(
        "default",
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "labels": {"test": "probe"}},
            "spec": {
                "nodeName": node.name,
                "hostNetwork": True,
                "containers": [{"name": "c", "image": "busybox", "command": ["sleep", "60"]}],
            },
        },
    )
    try:
        out = _exec(core, "default", name, ["ip", "-4", "-o", "addr", "show", "dev", "eth0"])
        assert f" {_kernel_addr(node.netns)}/" in out
        assert f" {node.underlay_ip}/" in out
    finally:
        core.delete_namespaced_pod(name, "default")


def test_status_shows_the_api(lab_api: dict[str, Any]) -> None:
    pid = lab_api["state"]["api"]["pid"]
    assert pid in lab_processes()["api"]
    code, out, _ = run_cli(["lab", "status"])
    assert code == 0
    assert f"api: running, pid {pid}" in out
    assert "kubeconfig /run/pathtrace-lab/kubeconfig" in out
    code, out, _ = run_cli(["lab", "status", "--json"])
    assert json.loads(out)["api"]["running"] is True


def test_a_second_api_is_refused(lab_api: dict[str, Any]) -> None:
    code, _, err = run_cli(["lab", "api", "--port", "0"])
    assert code == 1
    assert "already running" in err


def test_lab_api_in_the_foreground_until_ctrl_c(lab_api: dict[str, Any], tmp_path: Path) -> None:
    import shutil

    from tracer.lab import api

    exe = shutil.which("pathtrace")
    if exe is None:
        pytest.skip("the pathtrace script is not on PATH")
    api.stop_api()
    kubeconfig = tmp_path / "lab.kubeconfig"
    proc = subprocess.Popen(
        [exe, "lab", "api", "--kubeconfig-out", str(kubeconfig)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 20
        while not kubeconfig.exists() and time.monotonic() < deadline:
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.05)
        assert stat.S_IMODE(kubeconfig.stat().st_mode) == 0o600
        code, out, _ = run_cli(["lab", "status"])
        assert f"api: running, pid {proc.pid}" in out
        assert [n.metadata.name for n in _core(str(kubeconfig)).list_node().items]
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, stderr
    assert f"kubeconfig: {kubeconfig}" in stdout
    assert not kubeconfig.exists()
    assert api.api_info() is None


def _api_from_a_killed_starter() -> Any:
    """Start the API from a separate process, then kill -9 that process; return the API's record."""
    from tracer.lab import api

    api.stop_api()
    assert lab_processes()["api"] == []
    starter = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import time; from tracer.lab.api import start_api; start_api(); time.sleep(120)",
        ],
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 20
        while api.api_info() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        info = api.api_info()
        assert info is not None, "the API did not record itself within 20 s"
    finally:
        starter.kill()
        starter.wait()
    assert info.pid in lab_processes()["api"]  # detached: it outlived its starter
    return info


def test_api_found_by_command_line_without_its_record(lab_api: dict[str, Any]) -> None:
    """No record in the state file (e.g. it was lost): stop_api finds the API by its cmdline."""
    from tracer.lab import api
    from tracer.lab.topology import read_state, write_state

    info = _api_from_a_killed_starter()
    state = read_state()
    assert state is not None
    state.pop("api")
    write_state(state)
    assert api.stop_api() == [info.pid]
    assert lab_processes()["api"] == []
    assert not Path(info.kubeconfig).exists()


def test_down_after_the_starter_was_killed_leaves_nothing(lab_api: dict[str, Any]) -> None:
    """The API's starter killed -9: `lab down` ends the API by its recorded PID."""
    info = _api_from_a_killed_starter()
    code, _, err = run_cli(["lab", "down"])
    assert code == 0, err
    assert f"stopping the lab API (pid {info.pid})" in err
    left = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert [n for n in left.split() if n.startswith("pt-")] == []
    procs = lab_processes()
    assert procs["api"] == []
    assert procs["tcpdump"] == []
    assert not Path(info.kubeconfig).exists()


# -- without the lab --------------------------------------------------------------------------


def test_api_process_is_recognised_by_its_command_line() -> None:
    from tracer.lab.api import is_api_cmdline

    assert is_api_cmdline(["/usr/bin/python3", "-m", "tracer.lab.api", "--port", "0"])
    assert is_api_cmdline(["/usr/bin/python3", "/usr/local/bin/pathtrace", "lab", "api"])
    assert not is_api_cmdline(["/usr/bin/python3", "-c", "import tracer.lab.api"])
    assert not is_api_cmdline(["/usr/bin/python3", "/usr/local/bin/pathtrace", "lab", "down"])
    assert not is_api_cmdline(["sleep", "lab", "api"])


def test_a_recorded_pid_running_something_else_is_never_the_api() -> None:
    """A recycled PID in a stale state file must not be signalled."""
    from tracer.lab import api

    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        assert not api._is_api_pid(sleeper.pid)
        assert sleeper.pid not in api.find_api_pids()
    finally:
        sleeper.kill()
        sleeper.wait()


def test_api_record_round_trip_and_garbage() -> None:
    from tracer.lab.api import ApiInfo

    info = ApiInfo(123, 4567, "http://127.0.0.1:4567", "/run/pathtrace-lab/kubeconfig", 1.5)
    assert ApiInfo.from_json(json.loads(json.dumps(info.to_json()))) == info
    assert ApiInfo.from_json({"pid": "x", "port": 1}) is None
    assert ApiInfo.from_json(None) is None

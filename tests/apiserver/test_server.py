"""The stand-in API server, spoken to by the real kubernetes client over real HTTP/WebSocket."""

from __future__ import annotations

import base64
import http.client
import json
import os
import ssl
import stat
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from kubernetes.stream import stream

from tracer.apiserver import LocalExecBackend, Server, serve
from tracer.apiserver.fakes import sample_state
from tracer.apiserver.server import V4, V5

ALL_BYTES = bytes(range(256)) * 4


@pytest.fixture
def server() -> Iterator[Server]:
    s = serve(sample_state(), LocalExecBackend())
    try:
        yield s
    finally:
        s.close()


def _core(s: Server) -> client.CoreV1Api:
    return client.CoreV1Api(config.new_client_from_config(str(s.kubeconfig_path)))


def _exec(
    core: client.CoreV1Api, pod: str, argv: list[str]
) -> tuple[bytes, bytes, int | None, str]:
    r = stream(
        core.connect_get_namespaced_pod_exec,
        pod,
        "default",
        command=argv,
        stderr=True,
        stdin=False,
        stdout=True,
        tty=False,
        _preload_content=False,
        binary=True,
    )
    out, err = b"", b""
    while r.is_open():
        r.update(timeout=1)
        out += r.read_stdout() or b""
        err += r.read_stderr() or b""
    out += r.read_stdout() or b""
    err += r.read_stderr() or b""
    return out, err, r.returncode, r.subprotocol


def _verified(s: Server) -> ssl.SSLContext:
    """A client context that trusts only the CA in the server's kubeconfig."""
    cfg = json.loads(s.kubeconfig_path.read_text())
    ca = base64.b64decode(cfg["clusters"][0]["cluster"]["certificate-authority-data"]).decode()
    return ssl.create_default_context(cadata=ca)


def test_binds_loopback_over_tls_and_writes_private_kubeconfig(server: Server) -> None:
    assert server.url.startswith("https://127.0.0.1:")
    mode = stat.S_IMODE(os.stat(server.kubeconfig_path).st_mode)
    assert mode == 0o600
    assert stat.S_IMODE(os.stat(server.dir / "apiserver.key").st_mode) == 0o600
    cfg = json.loads(server.kubeconfig_path.read_text())
    assert cfg["users"][0]["user"]["token"] == server.token
    # The certificate verifies against the kubeconfig's CA for 127.0.0.1 (hostname checked).
    with urllib.request.urlopen(f"{server.url}/version", context=_verified(server)) as r:
        assert json.loads(r.read())["major"] == "1"
    # ... and against nothing else: the system's CAs do not know it.
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"{server.url}/version", timeout=5)
    # Plain HTTP gets no API.
    with pytest.raises((urllib.error.URLError, ConnectionError, http.client.HTTPException)):
        urllib.request.urlopen(server.url.replace("https", "http") + "/version", timeout=5)


def test_request_without_token_is_401(server: Server) -> None:
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(f"{server.url}/api/v1/nodes", timeout=5, context=_verified(server))
    assert e.value.code == 401


def test_lists_what_the_state_describes(server: Server) -> None:
    api = config.new_client_from_config(str(server.kubeconfig_path))
    core = client.CoreV1Api(api)
    assert sorted(n.metadata.name for n in core.list_node().items) == ["n1", "n2"]
    pods = core.list_pod_for_all_namespaces(label_selector="k8s-app=kube-dns").items
    assert [(p.metadata.namespace, p.metadata.name, p.status.pod_ip) for p in pods] == [
        ("kube-system", "coredns-1", "10.244.1.9")
    ]
    svc = core.read_namespaced_service("web", "default")
    assert (svc.spec.cluster_ip, svc.spec.ports[0].node_port) == ("10.96.0.20", 30080)
    slices = client.DiscoveryV1Api(api).list_namespaced_endpoint_slice(
        "default", label_selector="kubernetes.io/service-name=web"
    )
    ep = slices.items[0].endpoints[0]
    assert (ep.addresses, ep.node_name, ep.target_ref.name) == (["10.244.2.3"], "n2", "web-1")
    with pytest.raises(ApiException) as e:
        core.read_namespaced_pod("nope", "default")
    assert e.value.status == 404


@pytest.mark.parametrize("protocols", [(V5, V4), (V4,)], ids=["v5", "v4"])
def test_exec_carries_every_byte_value(protocols: tuple[str, ...]) -> None:
    with serve(sample_state(), LocalExecBackend(), protocols=protocols) as s:
        code = "import sys; sys.stdout.buffer.write(bytes(range(256)) * 4); sys.stderr.write('e'); sys.exit(3)"
        out, err, rc, proto = _exec(_core(s), "web-1", [sys.executable, "-c", code])
    assert proto == protocols[0]
    assert out == ALL_BYTES
    assert err == b"e"
    assert rc == 3


def test_exec_of_a_missing_program_reports_failure(server: Server) -> None:
    r = stream(
        _core(server).connect_get_namespaced_pod_exec,
        "web-1",
        "default",
        command=["/nonexistent/tool"],
        stderr=True,
        stdin=False,
        stdout=True,
        tty=False,
        _preload_content=False,
        binary=True,
    )
    r.run_forever(timeout=5)
    status = json.loads(r.read_channel(3))
    assert status["status"] == "Failure"
    assert "/nonexistent/tool" in status["message"]


def _eph(name: str, **extra: object) -> dict[str, object]:
    return {"name": name, "image": "netshoot", "command": ["sleep", "30"], **extra}


def test_ephemeral_containers_append_and_run(server: Server) -> None:
    core = _core(server)
    core.patch_namespaced_pod_ephemeralcontainers(
        "web-1",
        "default",
        {"spec": {"ephemeralContainers": [_eph("dbg-a", targetContainerName="app")]}},
    )
    pod = core.patch_namespaced_pod_ephemeralcontainers(
        "web-1", "default", {"spec": {"ephemeralContainers": [_eph("dbg-b")]}}
    )
    assert [c.name for c in pod.spec.ephemeral_containers] == ["dbg-a", "dbg-b"]
    states = {s.name: s.state.running is not None for s in pod.status.ephemeral_container_statuses}
    assert states == {"dbg-a": True, "dbg-b": True}
    running = {(p, c) for _, p, c, _ in server.running_processes()}
    assert {("web-1", "dbg-a"), ("web-1", "dbg-b")} <= running


@pytest.mark.parametrize(
    ("entry", "word"),
    [
        (_eph("dbg", ports=[{"containerPort": 80}]), "ports"),
        (_eph("dbg", resources={"limits": {"cpu": "1"}}), "resources"),
        (_eph("dbg", readinessProbe={"exec": {"command": ["true"]}}), "readinessProbe"),
        (_eph("dbg", targetContainerName="nope"), "targetContainerName"),
        (_eph("app"), "Duplicate"),
    ],
)
def test_ephemeral_container_validation(
    server: Server, entry: dict[str, object], word: str
) -> None:
    with pytest.raises(ApiException) as e:
        _core(server).patch_namespaced_pod_ephemeralcontainers(
            "web-1", "default", {"spec": {"ephemeralContainers": [entry]}}
        )
    assert e.value.status == 422
    assert word in json.loads(e.value.body)["message"]


def test_existing_ephemeral_container_cannot_change(server: Server) -> None:
    core = _core(server)
    core.patch_namespaced_pod_ephemeralcontainers(
        "web-1", "default", {"spec": {"ephemeralContainers": [_eph("dbg")]}}
    )
    with pytest.raises(ApiException) as e:
        core.patch_namespaced_pod_ephemeralcontainers(
            "web-1", "default", {"spec": {"ephemeralContainers": [_eph("dbg", image="other")]}}
        )
    assert e.value.status == 422
    assert "may not be changed" in json.loads(e.value.body)["message"]


def _node_pod(name: str) -> dict[str, object]:
    return {
        "metadata": {"name": name, "labels": {"app.kubernetes.io/managed-by": "pathtrace"}},
        "spec": {
            "nodeName": "n1",
            "hostNetwork": True,
            "containers": [{"name": "c", "image": "netshoot", "command": ["sleep", "30"]}],
        },
    }


def test_node_pod_runs_and_delete_ends_it(server: Server) -> None:
    core = _core(server)
    pod = core.create_namespaced_pod("default", _node_pod("np"))
    assert (pod.status.phase, pod.status.pod_ip) == ("Running", "10.0.0.1")
    assert any(p == "np" for _, p, _, _ in server.running_processes())
    core.delete_namespaced_pod("np", "default")
    assert not any(p == "np" for _, p, _, _ in server.running_processes())


def test_pod_security_baseline_refuses_host_network(server: Server) -> None:
    server.set_namespace_labels("default", {"pod-security.kubernetes.io/enforce": "baseline"})
    with pytest.raises(ApiException) as e:
        _core(server).create_namespaced_pod("default", _node_pod("np"))
    assert e.value.status == 403
    message = json.loads(e.value.body)["message"]
    assert 'violates PodSecurity "baseline:latest": host namespaces (hostNetwork=true)' in message


def test_rbac_denial_applies_to_review_and_request(server: Server) -> None:
    server.denials.deny("create", "pods", "default")
    api = config.new_client_from_config(str(server.kubeconfig_path))
    review = client.AuthorizationV1Api(api).create_self_subject_access_review(
        client.V1SelfSubjectAccessReview(
            spec=client.V1SelfSubjectAccessReviewSpec(
                resource_attributes=client.V1ResourceAttributes(
                    verb="create", resource="pods", namespace="default"
                )
            )
        )
    )
    assert review.status.allowed is False
    with pytest.raises(ApiException) as e:
        client.CoreV1Api(api).create_namespaced_pod("default", _node_pod("np"))
    assert e.value.status == 403


def test_close_ends_every_process() -> None:
    s = serve(sample_state(), LocalExecBackend())
    core = _core(s)
    core.create_namespaced_pod("default", _node_pod("np"))
    pids = [p.popen.pid for p in s.processes.procs]
    s.close()
    assert s.running_processes() == []
    for pid in pids:
        assert (
            not os.path.exists(f"/proc/{pid}") or open(f"/proc/{pid}/stat").read().split()[2] == "Z"
        )
    assert not s.kubeconfig_path.exists()


def test_events_are_bounded_and_watch_sees_every_change() -> None:
    from tracer.apiserver.store import EVENT_LIMIT, Store

    store = Store(sample_state())
    pod = store.get("pods", ("default", "client"))
    assert pod is not None
    for i in range(EVENT_LIMIT + 5):
        store.record_event(pod, "Test", f"event {i}")
    events, rv = store.items("events")
    assert len(events) == EVENT_LIMIT
    assert {e["message"] for e in events} >= {f"event {EVENT_LIMIT + 4}"}
    assert "event 0" not in {e["message"] for e in events}
    # A watch from a version sees what changed after it, in order, with increasing versions.
    since = int(rv)
    store.update("pods", ("default", "client"), lambda p: p["metadata"].update(labels={"x": "1"}))
    store.delete("pods", ("default", "client"))
    seen = list(store.watch("pods", since, deadline=0, stop=lambda: True))
    assert [(e.type, e.object["metadata"]["name"]) for e in seen] == [
        ("MODIFIED", "client"),
        ("DELETED", "client"),
    ]
    assert int(seen[0].object["metadata"]["resourceVersion"]) > since
    store.close()

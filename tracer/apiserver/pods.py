"""What writes to pods do: a Pod create, a delete, and the ephemeral containers a patch adds.

Admission first (validation and Pod Security levels, tracer.apiserver.admission), then the object
in the Store, then the containers' commands (Processes), with the Events the scheduler and the
kubelet record. Errors are raised as the API server answers them (ApiError); no HTTP here.
"""

from __future__ import annotations

import copy
import secrets
from typing import Any

from tracer.apiserver import admission, objects
from tracer.apiserver.processes import Processes
from tracer.apiserver.routes import ApiError, not_found
from tracer.apiserver.store import JSON, Store, now_rfc3339


def check_pod_security(store: Store, namespace: str, spec: JSON, pod_name: str) -> None:
    """Pod Security admission at the level of the namespace's enforce label (403 when violated)."""
    ns = store.get("namespaces", ("", namespace))
    labels = (ns or {}).get("metadata", {}).get("labels") or {}
    level = labels.get(objects.PSA_ENFORCE, "privileged")
    message = admission.psa_message(level, spec, pod_name)
    if message:
        raise ApiError(403, "Forbidden", message)


def create_pod(store: Store, processes: Processes, namespace: str, body: Any) -> JSON:
    """Admit a Pod, store it as Running on its node and start its containers' commands."""
    if not isinstance(body, dict):
        raise ApiError(400, "BadRequest", "the body must be a Pod object")
    md = body.get("metadata") or {}
    name = md.get("name") or ""
    if not name and md.get("generateName"):
        name = md["generateName"] + secrets.token_hex(3)[:5]
    spec = body.get("spec") or {}
    with store.lock:
        nodes = {n for _, n in store.kinds["nodes"]}
        if (namespace, name) in store.kinds["pods"]:
            raise ApiError(409, "AlreadyExists", f'pods "{name}" already exists')
    errs = admission.pod_errors(name, spec, nodes)
    if errs:
        raise ApiError(422, "Invalid", f'Pod "{name}" is invalid: ' + "; ".join(errs))
    check_pod_security(store, namespace, spec, name)
    containers = spec.get("containers") or []
    node = spec.get("nodeName") or ""
    pod = copy.deepcopy(body)
    pod["spec"] = objects.pod_spec_defaults(spec)
    pod["apiVersion"] = "v1"
    pod["kind"] = "Pod"
    pod["metadata"] = {
        **objects.meta(name, namespace, md.get("labels"), now_rfc3339()),
        **{k: v for k, v in md.items() if k in ("annotations",)},
    }
    host_ip = store.node_ip.get(node, "")
    pod["status"] = {
        "phase": "Running",
        "hostIP": host_ip,
        "podIP": host_ip,
        "podIPs": [{"ip": host_ip}],
        "startTime": now_rfc3339(),
        "containerStatuses": [objects.container_status(c["name"], c["image"]) for c in containers],
    }
    with store.lock:
        if (namespace, name) in store.kinds["pods"]:
            raise ApiError(409, "AlreadyExists", f'pods "{name}" already exists')
        created = store.put("pods", (namespace, name), pod)
    store.record_event(
        created,
        "Scheduled",
        f"Successfully assigned {namespace}/{name} to {node}",
        component="default-scheduler",
    )
    for c in containers:
        where = f"spec.containers{{{c['name']}}}"
        store.record_event(created, "Created", f"Created container {c['name']}", host=node, field_path=where)  # fmt: skip
        argv = [*(c.get("command") or []), *(c.get("args") or [])]
        if argv:
            try:
                processes.start(namespace, name, c["name"], argv, main=True)
            except OSError as e:
                why = str(e)

                def failed(p: JSON, why: str = why) -> None:
                    p["status"]["phase"] = "Failed"
                    p["status"]["message"] = why

                store.update("pods", (namespace, name), failed)
                store.record_event(created, "Failed", f"Error: {why}", type_="Warning", host=node, field_path=where)  # fmt: skip
                continue
        store.record_event(created, "Started", f"Started container {c['name']}", host=node, field_path=where)  # fmt: skip
    deadline = spec.get("activeDeadlineSeconds")
    if isinstance(deadline, int) and deadline > 0:
        processes.schedule_deadline(namespace, name, deadline)
    return store.get("pods", (namespace, name)) or created


def delete_pod(store: Store, processes: Processes, namespace: str, name: str) -> JSON:
    """End a pod's processes and remove it (no grace period: its processes are gone at once)."""
    pod = store.get("pods", (namespace, name))
    if pod is None:
        raise not_found("pods", name)
    for c in pod["spec"].get("containers") or []:
        store.record_event(
            pod,
            "Killing",
            f"Stopping container {c['name']}",
            host=pod["spec"].get("nodeName") or "",
            field_path=f"spec.containers{{{c['name']}}}",
        )

    def terminating(p: JSON) -> None:
        p["metadata"]["deletionTimestamp"] = now_rfc3339()
        p["metadata"]["deletionGracePeriodSeconds"] = 0

    store.update("pods", (namespace, name), terminating)
    processes.kill_container(namespace, name, None)
    gone = store.delete("pods", (namespace, name))
    return gone or pod


def patch_ephemeral(
    store: Store, processes: Processes, namespace: str, pod_name: str, content_type: str, body: Any
) -> JSON:
    """Add ephemeral containers to a pod (existing ones may not change) and start their commands."""
    if "strategic-merge-patch" not in content_type and "merge-patch" not in content_type:
        raise ApiError(415, "UnsupportedMediaType", f"unsupported patch type {content_type!r}")
    if not isinstance(body, dict):
        raise ApiError(400, "BadRequest", "the patch must be a JSON object")
    wanted = (body.get("spec") or {}).get("ephemeralContainers")
    if not isinstance(wanted, list):
        raise ApiError(422, "Invalid", "spec.ephemeralContainers: Required value")
    pod = store.get("pods", (namespace, pod_name))
    if pod is None:
        raise not_found("pods", pod_name)
    spec = pod["spec"]
    existing = {c["name"]: c for c in spec.get("ephemeralContainers") or []}
    names = {c["name"] for c in spec.get("containers") or []}
    added = []
    errs = []
    for i, c in enumerate(wanted):
        where = f"spec.ephemeralContainers[{i}]"
        if not isinstance(c, dict) or "$patch" in c:
            errs.append(f"{where}: Forbidden: existing ephemeral containers may not be removed")
            continue
        name = str(c.get("name", ""))
        if name in existing:
            c = objects.container_defaults(c, True)
            if {k: v for k, v in c.items() if v is not None} != {
                k: v for k, v in existing[name].items() if v is not None
            }:
                errs.append(
                    f"{where}: Forbidden: existing ephemeral containers {name!r} may not be changed"
                )
            continue
        errs += admission.ephemeral_errors(c, where, names)
        names.add(name)
        added.append(objects.container_defaults(c, True))
    if errs:
        raise ApiError(422, "Invalid", f'Pod "{pod_name}" is invalid: ' + "; ".join(errs))
    new_spec = {**spec, "ephemeralContainers": [*existing.values(), *added]}
    check_pod_security(store, namespace, new_spec, pod_name)

    def add(p: JSON) -> None:
        p["spec"]["ephemeralContainers"] = new_spec["ephemeralContainers"]
        statuses = p["status"].setdefault("ephemeralContainerStatuses", [])
        for c in added:
            statuses.append(objects.container_status(c["name"], c["image"]))

    updated = store.update("pods", (namespace, pod_name), add)
    if updated is None:
        raise not_found("pods", pod_name)
    node = updated["spec"].get("nodeName") or ""
    for c in added:
        where = f"spec.ephemeralContainers{{{c['name']}}}"
        store.record_event(updated, "Created", f"Created container {c['name']}", host=node, field_path=where)  # fmt: skip
        argv = [*(c.get("command") or []), *(c.get("args") or [])]
        if argv:
            processes.start(namespace, pod_name, c["name"], argv, main=True)
        store.record_event(updated, "Started", f"Started container {c['name']}", host=node, field_path=where)  # fmt: skip
    return store.get("pods", (namespace, pod_name)) or updated

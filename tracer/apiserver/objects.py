"""Kubernetes API objects as JSON dicts, rendered from the stand-in's ClusterState.

Pure: specs in, dicts out, plus the checks the real API server applies to what pathtrace sends
(label selectors, Pod Security levels, ephemeral-container rules). No I/O, no HTTP.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

from tracer.apiserver.state import (
    ClusterState,
    EndpointSpec,
    IngressSpec,
    NodeSpec,
    PodSpec,
    ServiceSpec,
)

CREATED = "2024-01-01T00:00:00Z"
# The API version the stand-in answers as: the release whose API it follows.
VERSION = {
    "major": "1",
    "minor": "37",
    "gitVersion": "v1.37.0+pathtrace",
    "gitCommit": "",
    "gitTreeState": "clean",
    "buildDate": "2026-01-01T00:00:00Z",
    "goVersion": "",
    "compiler": "",
    "platform": "linux/amd64",
}
JSON = dict[str, Any]

PSA_ENFORCE = "pod-security.kubernetes.io/enforce"
# Pod Security Standards, baseline: the only capabilities that may be added.
BASELINE_CAPS = frozenset(
    "AUDIT_WRITE CHOWN DAC_OVERRIDE FOWNER FSETID KILL MKNOD NET_BIND_SERVICE SETFCAP SETGID "
    "SETPCAP SETUID SYS_CHROOT".split()
)
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


def meta(
    name: str,
    namespace: str | None = None,
    labels: Mapping[str, str] | None = None,
    created: str = CREATED,
) -> JSON:
    m: JSON = {
        "name": name,
        "uid": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{namespace}/{name}/{created}")),
        "creationTimestamp": created,
        "resourceVersion": "1",
    }
    if namespace is not None:
        m["namespace"] = namespace
    if labels:
        m["labels"] = dict(labels)
    return m


def node(n: NodeSpec) -> JSON:
    spec: JSON = {}
    if n.pod_cidr:
        spec["podCIDR"] = n.pod_cidr
        spec["podCIDRs"] = [n.pod_cidr]
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": meta(n.name, labels={"kubernetes.io/hostname": n.name}),
        "spec": spec,
        "status": {
            "addresses": [
                {"type": "InternalIP", "address": n.internal_ip},
                {"type": "Hostname", "address": n.name},
            ],
            "conditions": [{"type": "Ready", "status": "True"}],
            # What the lab's nodes really are: network namespaces on this host, no kubelet.
            "nodeInfo": {
                "kubeletVersion": VERSION["gitVersion"],
                "osImage": "network namespace (pathtrace lab)",
                "containerRuntimeVersion": "ip-netns-exec://",
                "kernelVersion": "",
                "kubeProxyVersion": "",
                "bootID": "",
                "machineID": "",
                "systemUUID": "",
                "operatingSystem": "linux",
                "architecture": "amd64",
            },
        },
    }


def namespace(name: str, labels: Mapping[str, str]) -> JSON:
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": meta(name, labels={"kubernetes.io/metadata.name": name, **labels}),
        "spec": {"finalizers": ["kubernetes"]},
        "status": {"phase": "Active"},
    }


def container_status(name: str, image: str, running: bool = True) -> JSON:
    state: JSON = (
        {"running": {"startedAt": CREATED}}
        if running
        else {"terminated": {"exitCode": 0, "reason": "Completed"}}
    )
    return {
        "name": name,
        "image": image,
        "imageID": "",
        "ready": running,
        "restartCount": 0,
        "started": running,
        "state": state,
    }


def pod(p: PodSpec, host_ip: str) -> JSON:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": meta(p.name, p.namespace, p.labels),
        "spec": pod_spec_defaults(
            {
                "nodeName": p.node,
                "hostNetwork": p.host_network,
                "containers": [{"name": c, "image": p.image} for c in p.containers],
            }
        ),
        "status": {
            "phase": "Running",
            "podIP": p.ip,
            "podIPs": [{"ip": p.ip}],
            "hostIP": host_ip,
            "containerStatuses": [container_status(c, p.image) for c in p.containers],
        },
    }


def service(s: ServiceSpec) -> JSON:
    ports = []
    for sp in s.ports:
        port: JSON = {"port": sp.port, "targetPort": sp.target_port, "protocol": sp.protocol}
        if sp.name:
            port["name"] = sp.name
        if sp.node_port is not None:
            port["nodePort"] = sp.node_port
        ports.append(port)
    spec: JSON = {
        "type": s.type,
        "clusterIP": s.cluster_ip,
        "clusterIPs": [s.cluster_ip],
        "ports": ports,
        "sessionAffinity": "None",
    }
    if s.selector:
        spec["selector"] = dict(s.selector)
    if s.type in ("NodePort", "LoadBalancer"):
        spec["externalTrafficPolicy"] = s.external_traffic_policy
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta(s.name, s.namespace),
        "spec": spec,
    }


def endpoint_slice(s: ServiceSpec, pods: Mapping[tuple[str, str], PodSpec]) -> JSON:
    endpoints = []
    for e in s.endpoints:
        if isinstance(e, str):
            p = pods.get((s.namespace, e))
            if p is None:
                continue
            e = EndpointSpec(p.ip, p.node, p.name)
        ep: JSON = {
            "addresses": [e.ip],
            "conditions": {"ready": e.ready, "serving": e.ready, "terminating": False},
        }
        if e.node is not None:
            ep["nodeName"] = e.node
        if e.pod is not None:
            ep["targetRef"] = {"kind": "Pod", "name": e.pod, "namespace": s.namespace}
        endpoints.append(ep)
    ports = []
    for sp in s.ports:
        port: JSON = {"port": sp.target_port, "protocol": sp.protocol}
        port["name"] = sp.name
        ports.append(port)
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": meta(
            f"{s.name}-pt0",
            s.namespace,
            {
                "kubernetes.io/service-name": s.name,
                "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io",
            },
        ),
        "addressType": "IPv4",
        "endpoints": endpoints,
        "ports": ports,
    }


def ingress(i: IngressSpec, lb_ips: Iterable[str]) -> JSON:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": meta(i.name, i.namespace),
        "spec": {
            "ingressClassName": i.class_name,
            "rules": [
                {
                    "host": i.host,
                    "http": {
                        "paths": [
                            {
                                "path": i.path,
                                "pathType": "Prefix",
                                "backend": {
                                    "service": {"name": i.service, "port": {"number": i.port}}
                                },
                            }
                        ]
                    },
                }
            ],
        },
        "status": {"loadBalancer": {"ingress": [{"ip": ip} for ip in lb_ips]}},
    }


def initial_objects(
    state: ClusterState, created: str = CREATED
) -> dict[str, dict[tuple[str, str], JSON]]:
    """Every object of `state`, by kind, keyed by (namespace or "", name), created at `created`."""
    node_ip = {n.name: n.internal_ip for n in state.nodes}
    pods = {(p.namespace, p.name): p for p in state.pods}
    out: dict[str, dict[tuple[str, str], JSON]] = {
        "nodes": {("", n.name): node(n) for n in state.nodes},
        "namespaces": {
            ("", ns): namespace(ns, state.namespaces.get(ns, {})) for ns in state.namespace_names()
        },
        "pods": {(p.namespace, p.name): pod(p, node_ip.get(p.node, "")) for p in state.pods},
        "services": {(s.namespace, s.name): service(s) for s in state.services},
        "endpointslices": {
            (s.namespace, f"{s.name}-pt0"): endpoint_slice(s, pods) for s in state.services
        },
        "ingresses": {
            (i.namespace, i.name): ingress(i, [state.nodes[0].internal_ip] if state.nodes else [])
            for i in state.ingresses
        },
    }
    for kind in out.values():
        for o in kind.values():
            md = o["metadata"]
            md.update(meta(md["name"], md.get("namespace"), md.get("labels"), created))
            for cs in (o.get("status") or {}).get("containerStatuses") or []:
                if "running" in cs["state"]:
                    cs["state"]["running"]["startedAt"] = created
    return out


def status(code: int, reason: str, message: str, details: JSON | None = None) -> JSON:
    s: JSON = {
        "apiVersion": "v1",
        "kind": "Status",
        "metadata": {},
        "status": "Success" if code < 400 else "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    if details is not None:
        s["details"] = details
    return s


def _containers(spec: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    out = []
    for key in ("initContainers", "containers", "ephemeralContainers"):
        for c in spec.get(key) or []:
            if isinstance(c, Mapping):
                out.append((str(c.get("name", "")), c))
    return out


def pod_security_violations(level: str, spec: Mapping[str, Any]) -> list[str]:
    """The Pod Security Standard checks of `level` that `spec` fails, worded as the API does."""
    if level not in ("baseline", "restricted"):
        return []
    out = []
    hosts = [f"{k}=true" for k in ("hostNetwork", "hostPID", "hostIPC") if spec.get(k) is True]
    if hosts:
        out.append(f"host namespaces ({', '.join(hosts)})")
    privileged = [
        n for n, c in _containers(spec) if (c.get("securityContext") or {}).get("privileged")
    ]
    if privileged:
        names = ", ".join(f'"{n}"' for n in privileged)
        out.append(f"privileged (container {names} must not set securityContext.privileged=true)")
    allowed = BASELINE_CAPS if level == "baseline" else frozenset({"NET_BIND_SERVICE"})
    for n, c in _containers(spec):
        add = ((c.get("securityContext") or {}).get("capabilities") or {}).get("add") or []
        bad = sorted(str(a) for a in add if str(a) not in allowed)
        if bad:
            caps = ", ".join(f'"{a}"' for a in bad)
            out.append(
                f'non-default capabilities (container "{n}" must not include {caps} in '
                "securityContext.capabilities.add)"
            )
    if any(v.get("hostPath") for v in spec.get("volumes") or [] if isinstance(v, Mapping)):
        out.append("hostPath volumes")
    if level == "restricted":
        for n, c in _containers(spec):
            sc = c.get("securityContext") or {}
            if sc.get("allowPrivilegeEscalation") is not False:
                out.append(
                    f'allowPrivilegeEscalation != false (container "{n}" must set '
                    "securityContext.allowPrivilegeEscalation=false)"
                )
            drop = (sc.get("capabilities") or {}).get("drop") or []
            if "ALL" not in drop:
                out.append(
                    f'unrestricted capabilities (container "{n}" must set '
                    'securityContext.capabilities.drop=["ALL"])'
                )
    return out


def is_dns_label(name: str) -> bool:
    return bool(_DNS_LABEL.match(name))


FORBIDDEN_EPHEMERAL_FIELDS = (
    "ports",
    "livenessProbe",
    "readinessProbe",
    "startupProbe",
    "resources",
    "lifecycle",
)


_POD_DEFAULTS: JSON = {
    "restartPolicy": "Always",
    "terminationGracePeriodSeconds": 30,
    "dnsPolicy": "ClusterFirst",
    "securityContext": {},
    "schedulerName": "default-scheduler",
    "serviceAccountName": "default",
    "serviceAccount": "default",
    "enableServiceLinks": True,
    "preemptionPolicy": "PreemptLowerPriority",
    "priority": 0,
}
_CONTAINER_DEFAULTS: JSON = {
    "terminationMessagePath": "/dev/termination-log",
    "terminationMessagePolicy": "File",
    "imagePullPolicy": "IfNotPresent",
}


def container_defaults(c: Mapping[str, Any], ephemeral: bool = False) -> JSON:
    """A container with the fields the API server defaults (ephemeral ones get no resources)."""
    out = {**_CONTAINER_DEFAULTS, **c}
    if not ephemeral:
        out.setdefault("resources", {})
    return out


def pod_spec_defaults(spec: Mapping[str, Any]) -> JSON:
    """A pod spec as the API server stores it: defaults filled in where the client left them
    out (clients such as kubectl debug rely on them, e.g. spec.securityContext)."""
    out = {**_POD_DEFAULTS, **spec}
    out["containers"] = [container_defaults(c) for c in spec.get("containers") or []]
    if spec.get("ephemeralContainers"):
        out["ephemeralContainers"] = [
            container_defaults(c, True) for c in spec["ephemeralContainers"]
        ]
    return out

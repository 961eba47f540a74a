"""Preflight: ask the API what we may do before creating anything, and pick the fallback.

Checks every permission a capture needs with SelfSubjectAccessReview and reads the namespaces'
Pod Security `enforce` labels. A missing permission for one kind of point turns it off (node
capture off → pod captures only, and the reverse) with a message naming the exact permission or
level; a missing permission nothing can replace raises ClusterError. Creates nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from tracer.errors import ClusterError

PSA_ENFORCE = "pod-security.kubernetes.io/enforce"


class AccessChecker(Protocol):
    def can_i(
        self, verb: str, resource: str, namespace: str = "", subresource: str = "", group: str = ""
    ) -> bool: ...

    def namespace_labels(self, namespace: str) -> dict[str, str]: ...


@dataclass(frozen=True)
class Permission:
    verb: str
    resource: str
    subresource: str = ""
    group: str = ""
    namespace: str = ""

    def __str__(self) -> str:
        res = f"{self.resource}/{self.subresource}" if self.subresource else self.resource
        if self.group:
            res = f"{res}.{self.group}"
        where = f" in namespace {self.namespace}" if self.namespace else " (cluster-wide)"
        return f"{self.verb} {res}{where}"


@dataclass(frozen=True)
class Preflight:
    pod_capture: bool
    node_capture: bool
    warnings: tuple[str, ...]


def _read_permissions(namespaces: Iterable[str]) -> list[Permission]:
    out = [Permission("list", "nodes")]
    for ns in namespaces:
        out += [
            Permission("get", "pods", namespace=ns),
            Permission("list", "pods", namespace=ns),
            Permission("get", "services", namespace=ns),
            Permission("list", "endpointslices", group="discovery.k8s.io", namespace=ns),
        ]
    return out


def preflight(
    api: AccessChecker,
    *,
    pod_namespaces: Iterable[str],
    node_namespace: str,
    want_pods: bool,
    want_nodes: bool,
    privileged: bool = False,
) -> Preflight:
    pod_ns = sorted(set(pod_namespaces))
    warnings: list[str] = []
    missing = [p for p in _read_permissions(pod_ns) if not _allowed(api, p)]
    if missing:
        raise ClusterError(
            "missing permission: " + "; ".join(str(p) for p in missing),
            hint="see deploy/rbac.yaml for the minimal Role and ClusterRole",
        )

    pods_ok = want_pods
    if want_pods:
        needed = [
            p
            for ns in pod_ns
            for p in (
                Permission("patch", "pods", "ephemeralcontainers", namespace=ns),
                Permission("create", "pods", "exec", namespace=ns),
            )
        ]
        denied = [p for p in needed if not _allowed(api, p)]
        if denied:
            pods_ok = False
            warnings.append(
                "pod capture refused: missing permission "
                + "; ".join(str(p) for p in denied)
                + " — falling back to node captures only"
            )
        else:
            for ns in pod_ns:
                level = _psa_level(api, ns, warnings)
                if level in ("baseline", "restricted"):
                    pods_ok = False
                    warnings.append(
                        f"pod capture refused: namespace {ns} enforces Pod Security "
                        f'"{level}", which forbids adding NET_ADMIN/NET_RAW to an ephemeral '
                        "container — falling back to node captures only"
                    )
                    break

    nodes_ok = want_nodes
    if want_nodes:
        needed = [
            Permission("create", "pods", namespace=node_namespace),
            Permission("delete", "pods", namespace=node_namespace),
            Permission("create", "pods", "exec", namespace=node_namespace),
        ]
        denied = [p for p in needed if not _allowed(api, p)]
        if denied:
            nodes_ok = False
            warnings.append(
                "node capture refused: missing permission "
                + "; ".join(str(p) for p in denied)
                + " — falling back to pod captures only"
            )
        else:
            level = _psa_level(api, node_namespace, warnings)
            if level in ("baseline", "restricted"):
                nodes_ok = False
                what = "privileged containers and hostNetwork" if privileged else "hostNetwork"
                warnings.append(
                    f"node capture refused: namespace {node_namespace} enforces Pod Security "
                    f'"{level}", which forbids {what} — falling back to pod captures only '
                    "(use --node-namespace with a namespace labelled "
                    f"{PSA_ENFORCE}=privileged)"
                )
    if want_pods or want_nodes:
        if not pods_ok and not nodes_ok:
            raise ClusterError(
                "nothing can be captured: " + " / ".join(warnings),
                hint="grant the permissions in deploy/rbac.yaml, or use a namespace whose Pod "
                "Security level is privileged",
            )
    return Preflight(pods_ok, nodes_ok, tuple(warnings))


def _allowed(api: AccessChecker, p: Permission) -> bool:
    return api.can_i(p.verb, p.resource, p.namespace, p.subresource, p.group)


def _psa_level(api: AccessChecker, namespace: str, warnings: list[str]) -> str:
    try:
        labels = api.namespace_labels(namespace)
    except ClusterError as e:
        # Reading namespaces is often denied to namespace admins: admission will tell later.
        warnings.append(f"Pod Security level of namespace {namespace} unknown ({e})")
        return "unknown"
    return labels.get(PSA_ENFORCE, "privileged")

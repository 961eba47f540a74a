"""What the stand-in admits: RBAC answers, Pod Security levels and the API's validation. Pure.

`Denials` holds the RBAC rules a test injects; `Access` is one authorization question (a
SelfSubjectAccessReview's resourceAttributes, or a request's). `pod_errors` and
`ephemeral_errors` validate what clients send, worded as the real API server words it.
No I/O, no HTTP.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tracer.apiserver import objects

JSON = dict[str, Any]


@dataclass(frozen=True)
class Access:
    """One authorization question, as a SelfSubjectAccessReview's resourceAttributes."""

    verb: str
    resource: str
    subresource: str = ""
    group: str = ""
    namespace: str = ""

    def describe(self) -> str:
        res = f"{self.resource}/{self.subresource}" if self.subresource else self.resource
        where = (
            f' in the namespace "{self.namespace}"' if self.namespace else " at the cluster scope"
        )
        return f'cannot {self.verb} resource "{res}" in API group "{self.group}"{where}'


@dataclass
class Denials:
    """RBAC rules the stand-in refuses: (verb, resource[/subresource], namespace or "*")."""

    rules: set[tuple[str, str, str]] = field(default_factory=set)

    def deny(self, verb: str, resource: str, namespace: str = "*") -> None:
        self.rules.add((verb, resource, namespace))

    def allowed(self, a: Access) -> bool:
        res = f"{a.resource}/{a.subresource}" if a.subresource else a.resource
        for verb, r, ns in self.rules:
            if verb in (a.verb, "*") and r in (res, "*") and ns in ("*", a.namespace):
                return False
        return True


def review(denials: Denials, body: Any) -> JSON:
    """The answer to a SelfSubjectAccessReview."""
    spec = (body or {}).get("spec") or {} if isinstance(body, Mapping) else {}
    attrs = spec.get("resourceAttributes") or {}
    access = Access(
        verb=str(attrs.get("verb", "")),
        resource=str(attrs.get("resource", "")),
        subresource=str(attrs.get("subresource") or ""),
        group=str(attrs.get("group") or ""),
        namespace=str(attrs.get("namespace") or ""),
    )
    allowed = denials.allowed(access)
    out: JSON = {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SelfSubjectAccessReview",
        "metadata": {"creationTimestamp": None},
        "spec": spec,
        "status": {"allowed": allowed},
    }
    # A plain RBAC denial carries no reason, as from a real API server.
    return out


def pod_errors(name: str, spec: Mapping[str, Any], nodes: set[str]) -> list[str]:
    """Why a Pod create is Invalid (422); the stand-in runs only host-network pods."""
    errs = []
    if not objects.is_dns_label(name):
        errs.append(f"metadata.name: Invalid value: {name!r}: must be a DNS label")
    containers = spec.get("containers") or []
    if not containers:
        errs.append("spec.containers: Required value")
    for i, c in enumerate(containers):
        if not c.get("name") or not c.get("image"):
            errs.append(f"spec.containers[{i}]: name and image are required")
    node = spec.get("nodeName")
    if node and node not in nodes:
        errs.append(f"spec.nodeName: Not found: {node!r}")
    if not spec.get("hostNetwork"):
        errs.append("spec.hostNetwork: the stand-in runs only host-network pods")
    return errs


def ephemeral_errors(c: JSON, where: str, names: set[str]) -> list[str]:
    """Why one new ephemeral container is Invalid."""
    from kubernetes.client.models import V1EphemeralContainer

    errs = []
    name = str(c.get("name", ""))
    if not objects.is_dns_label(name):
        errs.append(f"{where}.name: Invalid value: {name!r}: must be a DNS label")
    if name in names:
        errs.append(f"{where}.name: Duplicate value: {name!r}")
    if not c.get("image"):
        errs.append(f"{where}.image: Required value")
    for f in objects.FORBIDDEN_EPHEMERAL_FIELDS:
        if c.get(f):
            errs.append(f"{where}.{f}: Forbidden: cannot be set for an Ephemeral Container")
    target = c.get("targetContainerName")
    if target and target not in names:
        errs.append(f"{where}.targetContainerName: Not found: {target!r}")
    try:
        # The client's own model is the schema: unknown types or shapes fail here as they would
        # in the API server's decoder.
        V1EphemeralContainer.from_dict(c)
    except Exception as e:  # pydantic raises its own ValidationError type
        errs.append(f"{where}: Invalid value: {str(e).splitlines()[0]}")
    return errs


def psa_message(level: str, spec: Mapping[str, Any], pod_name: str) -> str | None:
    """The Forbidden message of Pod Security admission at `level`, or None when admitted."""
    bad = objects.pod_security_violations(level, spec)
    if not bad:
        return None
    return f'pods "{pod_name}" is forbidden: violates PodSecurity "{level}:latest": ' + ", ".join(
        bad
    )

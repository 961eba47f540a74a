"""What the stand-in serves, as the API's discovery documents describe it. Pure.

One table of resources (`RESOURCES`) gives the legacy documents (`/api` APIVersions, `/apis`
APIGroupList, `/api/v1` and `/apis/G/V` APIResourceList) and the aggregated ones
(apidiscovery.k8s.io/v2 APIGroupDiscoveryList) that current kubectl asks for first. The routes,
the verbs the handler accepts and `kubectl api-resources` all come from this table.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

JSON = dict[str, Any]

AGGREGATED_V2 = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
AGGREGATED_V2BETA1 = "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList"

READ = ("get", "list", "watch")


@dataclass(frozen=True)
class Subresource:
    name: str
    kind: str
    verbs: tuple[str, ...]
    group: str = ""
    version: str = "v1"


@dataclass(frozen=True)
class Resource:
    group: str
    version: str
    plural: str
    singular: str
    kind: str
    namespaced: bool
    verbs: tuple[str, ...]
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    subresources: tuple[Subresource, ...] = ()

    @property
    def group_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def prefix(self) -> str:
        """The URL prefix of its group version: /api/v1 or /apis/G/V."""
        return f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"

    @property
    def list_kind(self) -> str:
        return f"{self.kind}List"


RESOURCES: tuple[Resource, ...] = (
    Resource("", "v1", "namespaces", "namespace", "Namespace", False, READ, ("ns",)),
    Resource("", "v1", "nodes", "node", "Node", False, READ, ("no",)),
    Resource(
        "",
        "v1",
        "pods",
        "pod",
        "Pod",
        True,
        ("create", "delete", "get", "list", "watch"),
        ("po",),
        ("all",),
        (
            Subresource("ephemeralcontainers", "Pod", ("get", "patch")),
            Subresource("exec", "PodExecOptions", ("create", "get")),
            Subresource("log", "Pod", ("get",)),
        ),
    ),
    Resource("", "v1", "services", "service", "Service", True, READ, ("svc",), ("all",)),
    Resource("", "v1", "events", "event", "Event", True, READ, ("ev",)),
    Resource(
        "authorization.k8s.io",
        "v1",
        "selfsubjectaccessreviews",
        "selfsubjectaccessreview",
        "SelfSubjectAccessReview",
        False,
        ("create",),
    ),
    Resource(
        "discovery.k8s.io", "v1", "endpointslices", "endpointslice", "EndpointSlice", True, READ
    ),
    Resource("networking.k8s.io", "v1", "ingresses", "ingress", "Ingress", True, READ, ("ing",)),
)
BY_PLURAL = {(r.group, r.plural): r for r in RESOURCES}


def groups() -> list[str]:
    """The named API groups, in the order they are listed (the core group is not one)."""
    return list(dict.fromkeys(r.group for r in RESOURCES if r.group))


def api_versions(server_address: str) -> JSON:
    """GET /api (legacy)."""
    return {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [
            {"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}
        ],
    }


def api_group_list() -> JSON:
    """GET /apis (legacy)."""
    out = []
    for g in groups():
        gv = {"groupVersion": f"{g}/v1", "version": "v1"}
        out.append({"name": g, "versions": [gv], "preferredVersion": gv})
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": out}


def api_group(group: str) -> JSON | None:
    """GET /apis/G."""
    if group not in groups():
        return None
    gv = {"groupVersion": f"{group}/v1", "version": "v1"}
    return {
        "kind": "APIGroup",
        "apiVersion": "v1",
        "name": group,
        "versions": [gv],
        "preferredVersion": gv,
    }


def _in(group: str, version: str) -> list[Resource]:
    return [r for r in RESOURCES if r.group == group and r.version == version]


def resource_list(group: str, version: str) -> JSON | None:
    """GET /api/v1 or /apis/G/V: an APIResourceList, or None for a group version not served."""
    found = _in(group, version)
    if not found:
        return None
    out = []
    for r in found:
        entry: JSON = {
            "name": r.plural,
            "singularName": r.singular,
            "namespaced": r.namespaced,
            "kind": r.kind,
            "verbs": list(r.verbs),
        }
        if r.short_names:
            entry["shortNames"] = list(r.short_names)
        if r.categories:
            entry["categories"] = list(r.categories)
        out.append(entry)
        for s in r.subresources:
            out.append(
                {
                    "name": f"{r.plural}/{s.name}",
                    "singularName": "",
                    "namespaced": r.namespaced,
                    "kind": s.kind,
                    "verbs": list(s.verbs),
                }
            )
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": found[0].group_version,
        "resources": out,
    }


def _discovery_resource(r: Resource) -> JSON:
    out: JSON = {
        "resource": r.plural,
        "responseKind": {"group": r.group, "version": r.version, "kind": r.kind},
        "scope": "Namespaced" if r.namespaced else "Cluster",
        "singularResource": r.singular,
        "verbs": list(r.verbs),
    }
    if r.short_names:
        out["shortNames"] = list(r.short_names)
    if r.categories:
        out["categories"] = list(r.categories)
    if r.subresources:
        out["subresources"] = [
            {
                "subresource": s.name,
                "responseKind": {"group": s.group, "version": s.version, "kind": s.kind},
                "verbs": list(s.verbs),
            }
            for s in r.subresources
        ]
    return out


def aggregated(core: bool, version: str = "v2") -> JSON:
    """GET /api (core=True) or /apis as an APIGroupDiscoveryList (`version` v2 or v2beta1)."""
    names = [""] if core else groups()
    items = []
    for g in names:
        versions = []
        for v in dict.fromkeys(r.version for r in RESOURCES if r.group == g):
            versions.append(
                {
                    "version": v,
                    "resources": [_discovery_resource(r) for r in _in(g, v)],
                    "freshness": "Current",
                }
            )
        items.append({"metadata": {"name": g, "creationTimestamp": None}, "versions": versions})
    return {
        "kind": "APIGroupDiscoveryList",
        "apiVersion": f"apidiscovery.k8s.io/{version}",
        "metadata": {},
        "items": items,
    }


def media_types(accept: str) -> list[tuple[str, dict[str, str]]]:
    """An Accept header as (type, parameters) pairs, in the client's order of preference."""
    out = []
    for part in accept.split(","):
        fields = [f.strip() for f in part.split(";") if f.strip()]
        if not fields:
            continue
        params = dict(f.split("=", 1) for f in fields[1:] if "=" in f)
        out.append((fields[0].lower(), params))
    return out


def aggregated_accepted(accept: str) -> str | None:
    """The aggregated-discovery media type `accept` asks for first, or None for the legacy one."""
    for mtype, params in media_types(accept):
        if params.get("as") == "APIGroupDiscoveryList" and params.get("g") == "apidiscovery.k8s.io":
            if params.get("v") == "v2":
                return AGGREGATED_V2
            if params.get("v") == "v2beta1":
                return AGGREGATED_V2BETA1
        elif mtype in ("application/json", "*/*", "application/*"):
            return None
    return None

"""Where a request goes: an API path as a resource route, its query's parameters, and the errors
the routes answer with.

`route` parses `/api/v1/...` and `/apis/GROUP/VERSION/...` against the served resources
(tracer.apiserver.discovery); `ApiError` carries what becomes the Status object of an error
answer. Pure: no HTTP, no store.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from tracer.apiserver import discovery

JSON = dict[str, Any]
Query = dict[str, list[str]]


class ApiError(Exception):
    def __init__(self, code: int, reason: str, message: str, details: JSON | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details


def not_found(resource: str, name: str, group: str = "") -> ApiError:
    """The 404 Status a real API server returns for a missing object."""
    qualified = f"{resource}.{group}" if group else resource
    return ApiError(
        404, "NotFound", f'{qualified} "{name}" not found', {"name": name, "kind": resource}
    )


@dataclass(frozen=True)
class Route:
    resource: discovery.Resource
    namespace: str
    name: str
    sub: str

    @property
    def plural(self) -> str:
        return self.resource.plural

    @property
    def group(self) -> str:
        return self.resource.group


_PATH = re.compile(
    r"^/(?:api/(?P<core>v1)|apis/(?P<group>[a-z0-9.-]+)/(?P<version>v[0-9a-z]+))"
    r"(?:/namespaces/(?P<ns>[^/]+)(?=/))?"
    r"/(?P<resource>[a-z]+)(?:/(?P<name>[^/]+))?(?:/(?P<sub>[a-z]+))?/?$"
)


def route(path: str) -> Route | None:
    m = _PATH.match(path)
    if not m:
        return None
    group = m["group"] or ""
    version = m["core"] or m["version"]
    res = discovery.BY_PLURAL.get((group, m["resource"]))
    if res is None or res.version != version:
        return None
    ns, name, sub = m["ns"] or "", m["name"] or "", m["sub"] or ""
    if ns and not res.namespaced:
        return None
    if sub and sub not in {s.name for s in res.subresources}:
        return None
    return Route(res, ns, name, sub)


def param(query: Query, key: str) -> str:
    """A query parameter's first value ("" when absent)."""
    return (query.get(key) or [""])[0]


def flag(query: Query, key: str) -> bool:
    """A boolean query parameter, as the API server reads one."""
    return param(query, key).lower() in ("1", "true")

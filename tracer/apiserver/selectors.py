"""Label and field selectors, parsed and matched as the real API server does. Pure.

Label selectors: `a=b`, `a==b`, `a!=b`, `a in (x,y)`, `a notin (x)`, `a`, `!a`. Field selectors:
`f=v`, `f==v`, `f!=v` over the fields the real server indexes for each kind; any other field is
refused with the real error ("field label not supported"), never silently ignored.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

JSON = dict[str, Any]


class SelectorError(ValueError):
    """A selector the API server refuses (400 BadRequest)."""


@dataclass(frozen=True)
class Requirement:
    key: str
    op: str  # = != in notin exists !exists
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        if self.op == "exists":
            return self.key in labels
        if self.op == "!exists":
            return self.key not in labels
        if self.op in ("=", "in"):
            return labels.get(self.key) in self.values
        # != and notin also match objects without the label, as in Kubernetes.
        return labels.get(self.key) not in self.values


_SET = re.compile(r"^\s*(!?)\s*([A-Za-z0-9_./-]+)\s*(?:(notin|in)\s*\(([^)]*)\))?\s*")
_EQ = re.compile(r"^\s*([A-Za-z0-9_./-]+)\s*(==|=|!=)\s*([A-Za-z0-9_.-]*)\s*")


def parse_labels(selector: str) -> list[Requirement]:
    out: list[Requirement] = []
    rest = selector.strip()
    while rest:
        m = _EQ.match(rest)
        if m:
            out.append(Requirement(m[1], "!=" if m[2] == "!=" else "=", (m[3],)))
        else:
            m = _SET.match(rest)
            if not m or not m[2]:
                raise SelectorError(f"unable to parse requirement: {rest!r}")
            if m[3]:
                if m[1]:
                    raise SelectorError(f"unable to parse requirement: {rest!r}")
                values = tuple(v.strip() for v in m[4].split(",") if v.strip())
                out.append(Requirement(m[2], m[3], values))
            else:
                out.append(Requirement(m[2], "!exists" if m[1] else "exists"))
        rest = rest[m.end() :]
        if rest.startswith(","):
            rest = rest[1:]
        elif rest:
            raise SelectorError(f"found '{rest[0]}', expected: ',' or end of string")
    return out


def labels_match(selector: str | None, labels: Mapping[str, str]) -> bool:
    if not selector:
        return True
    return all(r.matches(labels) for r in parse_labels(selector))


def _get(obj: JSON, path: str) -> Any:
    cur: Any = obj
    for part in path.split("."):
        if not isinstance(cur, Mapping):
            return None
        cur = cur.get(part)
    return cur


def _str(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return "" if v is None else str(v)


def _event_source(o: JSON) -> str:
    return _str(_get(o, "source.component")) or _str(o.get("reportingComponent"))


# Fields each kind can be selected by (the real server's field label conversions).
def _path(path: str) -> Callable[[JSON], str]:
    return lambda o: _str(_get(o, path))


_EXTRA: dict[str, dict[str, Callable[[JSON], str]]] = {
    "pods": {
        f: _path(f)
        for f in (
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "spec.hostNetwork",
            "status.phase",
            "status.podIP",
            "status.nominatedNodeName",
        )
    },
    "nodes": {"spec.unschedulable": lambda o: _str(bool(_get(o, "spec.unschedulable")))},
    "namespaces": {"status.phase": lambda o: _str(_get(o, "status.phase"))},
    "services": {
        "spec.clusterIP": lambda o: _str(_get(o, "spec.clusterIP")),
        "spec.type": lambda o: _str(_get(o, "spec.type")),
    },
    "events": {
        **{
            f"involvedObject.{k}": _path(f"involvedObject.{k}")
            for k in (
                "kind",
                "namespace",
                "name",
                "uid",
                "apiVersion",
                "resourceVersion",
                "fieldPath",
            )
        },
        "reason": lambda o: _str(o.get("reason")),
        "reportingComponent": lambda o: _str(o.get("reportingComponent")),
        "source": _event_source,
        "type": lambda o: _str(o.get("type")),
    },
    "endpointslices": {"addressType": lambda o: _str(o.get("addressType"))},
}


@dataclass(frozen=True)
class FieldTerm:
    field: str
    negate: bool
    value: str


def parse_fields(resource: str, selector: str) -> list[FieldTerm]:
    """Parse a field selector for `resource`; unsupported fields raise SelectorError."""
    allowed = {"metadata.name", "metadata.namespace", *_EXTRA.get(resource, {})}
    out = []
    for term in selector.split(","):
        term = term.strip()
        if not term:
            continue
        m = re.match(r"^([^=!]+)(==|=|!=)(.*)$", term)
        if not m:
            raise SelectorError(f"invalid selector: '{selector}'; can't understand '{term}'")
        name = m[1].strip()
        if name not in allowed:
            raise SelectorError(f"field label not supported: {name}")
        out.append(FieldTerm(name, m[2] == "!=", m[3].strip()))
    return out


def field_value(resource: str, obj: JSON, name: str) -> str:
    if name in ("metadata.name", "metadata.namespace"):
        return _str(_get(obj, name))
    return _EXTRA[resource][name](obj)


def fields_match(resource: str, terms: list[FieldTerm], obj: JSON) -> bool:
    return all((field_value(resource, obj, t.field) == t.value) != t.negate for t in terms)

"""The run directory: the one format every source (cluster, lab, saved files) ends in.

    RUN/
      manifest.json                  schema "pathtrace-run/v1"
      points/<point>.pcap|.pcapng    one capture per point
      nodes/<node>/iptables-save.txt nft.txt ipvsadm.txt conntrack.txt links.json

This module reads and writes the manifest and the node facts, and owns how anything of a run (or
the lab's private state) is written: `write_private`, atomic and owner-readable only. It does not
read captures.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from tracer.errors import InputError
from tracer.model import ROLES, CapturePoint

SCHEMA = "pathtrace-run/v1"
NODE_FACT_FILES = ("iptables-save.txt", "nft.txt", "ipvsadm.txt", "conntrack.txt", "links.json")


@dataclass(frozen=True)
class ServiceEndpoint:
    address: str
    pod: str | None = None
    node: str | None = None
    ready: bool = True


@dataclass(frozen=True)
class ServicePort:
    port: int
    protocol: str = "TCP"
    name: str = ""
    target_port: int | None = None
    node_port: int | None = None


@dataclass(frozen=True)
class Service:
    namespace: str
    name: str
    cluster_ips: tuple[str, ...] = ()
    ports: tuple[ServicePort, ...] = ()
    endpoints: tuple[ServiceEndpoint, ...] = ()
    external_traffic_policy: str = "Cluster"
    session_affinity: str = "None"


@dataclass(frozen=True)
class Manifest:
    source: str  # kubernetes | lab | import
    created: str
    points: tuple[CapturePoint, ...]
    services: tuple[Service, ...] = ()
    request: dict[str, Any] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)  # source-specific facts (lab truth, ...)

    def point(self, name: str) -> CapturePoint:
        for p in self.points:
            if p.name == name:
                return p
        raise KeyError(name)


def _from_dict(cls: Any, data: dict[str, Any], where: str) -> Any:
    known = {f.name for f in fields(cls)}
    unknown = set(data) - known
    if unknown:
        # Newer writers may add fields; keep reading, but never silently mis-assign.
        data = {k: v for k, v in data.items() if k in known}
    try:
        return cls(**data)
    except TypeError as e:
        raise InputError(f"{where}: {e}") from e


def manifest_from_json(data: Any, where: str = "manifest.json") -> Manifest:
    """Build a Manifest from parsed JSON, naming the field at fault on error."""
    if not isinstance(data, dict):
        raise InputError(f"{where}: expected a JSON object")
    schema = data.get("schema")
    if schema != SCHEMA:
        raise InputError(f"{where}: field 'schema' is {schema!r}, expected {SCHEMA!r}")
    raw_points = data.get("points")
    if not isinstance(raw_points, list) or not raw_points:
        raise InputError(f"{where}: field 'points' must be a non-empty list")
    points = []
    for i, p in enumerate(raw_points):
        if not isinstance(p, dict) or "name" not in p or "file" not in p:
            raise InputError(f"{where}: points[{i}] needs 'name' and 'file'")
        point = _from_dict(CapturePoint, p, f"{where}: points[{i}]")
        if point.role not in ROLES:
            raise InputError(
                f"{where}: points[{i}].role is {point.role!r}; expected one of {', '.join(ROLES)}"
            )
        points.append(point)
    services = []
    for i, s in enumerate(data.get("services") or []):
        ports = tuple(
            _from_dict(ServicePort, p, f"{where}: services[{i}].ports") for p in s.get("ports", [])
        )
        eps = tuple(
            _from_dict(ServiceEndpoint, e, f"{where}: services[{i}].endpoints")
            for e in s.get("endpoints", [])
        )
        rest = {k: v for k, v in s.items() if k not in ("ports", "endpoints")}
        rest["cluster_ips"] = tuple(rest.get("cluster_ips", ()))
        services.append(
            _from_dict(
                Service, {**rest, "ports": ports, "endpoints": eps}, f"{where}: services[{i}]"
            )
        )
    return Manifest(
        source=str(data.get("source", "import")),
        created=str(data.get("created", "")),
        points=tuple(points),
        services=tuple(services),
        request=dict(data.get("request") or {}),
        warnings=tuple(data.get("warnings") or ()),
        extra=dict(data.get("extra") or {}),
    )


def manifest_to_json(m: Manifest) -> dict[str, Any]:
    d = asdict(m)
    return {"schema": SCHEMA, **d}


def read_json(path: str | os.PathLike[str]) -> Any | None:
    """The parsed JSON of `path`, or None when the file does not exist; errors name the file."""
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        return None
    except OSError as e:
        raise InputError(f"{path}: {e.strerror}") from e
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise InputError(f"{path}: not valid JSON (line {e.lineno}: {e.msg})") from e


def load_manifest(run: str | os.PathLike[str]) -> Manifest:
    """Read RUN/manifest.json; errors name the file and the field."""
    path = Path(run) / "manifest.json"
    data = read_json(path)
    if data is None:
        raise InputError(
            f"{run}: no manifest.json; not a run directory",
            hint="give capture files with --point ROLE:NAME[@NODE]=FILE instead",
        )
    return manifest_from_json(data, str(path))


def write_private(path: str | os.PathLike[str], data: str | bytes) -> Path:
    """Write `path` whole or not at all (a temporary file renamed over it), readable by its owner
    only: captures, rules and tokens are nobody else's business. Creates the parent directory."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # a temporary file left by a crash keeps its mode through O_TRUNC
    with os.fdopen(fd, "wb") as f:
        f.write(data.encode() if isinstance(data, str) else data)
    os.replace(tmp, path)
    return path


def write_json_private(path: str | os.PathLike[str], data: Any) -> Path:
    """`data` as indented JSON, through `write_private`."""
    return write_private(path, json.dumps(data, indent=2) + "\n")


def write_manifest(run: str | os.PathLike[str], manifest: Manifest) -> Path:
    """Write RUN/manifest.json (owner-readable only, like the captures)."""
    return write_json_private(Path(run) / "manifest.json", manifest_to_json(manifest))


def point_file(run: str | os.PathLike[str], point: CapturePoint) -> Path:
    return Path(run) / point.file


def node_fact(run: str | os.PathLike[str], node: str, name: str) -> str | None:
    """The text of RUN/nodes/<node>/<name>, or None when it was not captured."""
    path = Path(run) / "nodes" / node / name
    try:
        return path.read_text()
    except FileNotFoundError:
        return None
    except OSError as e:
        raise InputError(f"{path}: {e.strerror}") from e

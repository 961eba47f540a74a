"""The run directory: the one format every source (cluster, lab, saved files) ends in.

    RUN/
      manifest.json                  schema "pathtrace-run/v1"
      points/<point>.pcap|.pcapng    one capture per point
      nodes/<node>/iptables-save.txt nft.txt ipvsadm.txt conntrack.txt links.json
      pods/<point>/iptables-save.txt conntrack.txt links.json   (a pod's own netns: a sidecar's
                                       REDIRECT rules, and the ifindexes of an `any` capture there)

This module reads and writes the manifest and the node facts, and owns how anything of a run (or
the lab's private state) is written: `write_private`, atomic and owner-readable only. It does not
read captures. A run directory is input like any capture: the manifest is checked against
`MANIFEST_SCHEMA` before anything is built from it, every file it names must stay inside RUN and
be a regular file (never a FIFO or device), and node facts are decoded tolerantly.
"""

from __future__ import annotations

import errno
import json
import os
import stat
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from tracer.errors import InputError
from tracer.model import ROLES, CapturePoint
from tracer.words import printable

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


# --- the manifest's schema -------------------------------------------------------------------
# A small subset of JSON Schema (type, const, enum, properties, required, items, minItems,
# maxItems, minimum, maximum, maxLength), checked by `_check` before anything is built from the
# file: a manifest is input like any capture, and a wrong type must be named, not crash a reader
# far away. Unknown keys are allowed (newer writers may add fields) and ignored.

_TEXT: dict[str, Any] = {"type": "string", "maxLength": 4096}
_OPT_TEXT: dict[str, Any] = {"type": ["string", "null"], "maxLength": 4096}
_NS_TIME: dict[str, Any] = {"type": ["integer", "null"], "minimum": 0, "maximum": (1 << 63) - 1}
_COUNT: dict[str, Any] = {"type": ["integer", "null"], "minimum": 0, "maximum": (1 << 63) - 1}
_PORT: dict[str, Any] = {"type": ["integer", "null"], "minimum": 0, "maximum": 65535}

POINT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["name", "role", "file"],
    "properties": {
        "name": {**_TEXT, "minLength": 1, "maxLength": 253},
        "role": {"type": "string", "enum": list(ROLES)},
        "file": {**_TEXT, "minLength": 1},
        "node": _OPT_TEXT,
        "pod": _OPT_TEXT,
        "namespace": _OPT_TEXT,
        "container": _OPT_TEXT,
        "interface": _OPT_TEXT,
        "started_ns": _NS_TIME,
        "stopped_ns": _NS_TIME,
        "packets": _COUNT,
        "dropped": _COUNT,
    },
}
SERVICE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["namespace", "name"],
    "properties": {
        "namespace": _TEXT,
        "name": _TEXT,
        "cluster_ips": {"type": ["array", "null"], "items": _TEXT, "maxItems": 16},
        "ports": {
            "type": ["array", "null"],
            "items": {
                "type": "object",
                "required": ["port"],
                "properties": {
                    "port": {**_PORT, "type": "integer"},
                    "protocol": _TEXT,
                    "name": _TEXT,
                    "target_port": _PORT,
                    "node_port": _PORT,
                },
            },
        },
        "endpoints": {
            "type": ["array", "null"],
            "items": {
                "type": "object",
                "required": ["address"],
                "properties": {
                    "address": _TEXT,
                    "pod": _OPT_TEXT,
                    "node": _OPT_TEXT,
                    "ready": {"type": "boolean"},
                },
            },
        },
        "external_traffic_policy": _TEXT,
        "session_affinity": _TEXT,
    },
}
MANIFEST_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["schema", "points"],
    "properties": {
        "schema": {"const": SCHEMA},
        "source": _TEXT,
        "created": _TEXT,
        "points": {"type": "array", "minItems": 1, "maxItems": 4096, "items": POINT_SCHEMA},
        "services": {"type": ["array", "null"], "items": SERVICE_SCHEMA},
        "request": {"type": ["object", "null"]},
        "warnings": {"type": ["array", "null"], "items": {"type": "string"}},
        "extra": {"type": ["object", "null"]},
    },
}

_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "object": (dict,),
    "array": (list,),
    "null": (type(None),),
}


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    for name in ("null", "string", "integer", "number", "object", "array"):
        if isinstance(value, _JSON_TYPES[name]):
            return name
    return type(value).__name__


def _check(value: Any, schema: dict[str, Any], where: str) -> None:
    """Raise InputError naming `where` (e.g. "points[0].file") when `value` breaks `schema`."""
    kind = _json_type(value)
    if "const" in schema and value != schema["const"]:
        raise _SchemaError(where, f"is {_short(value)}, expected {schema['const']!r}")
    allowed = schema.get("type")
    if allowed is not None:
        names = [allowed] if isinstance(allowed, str) else list(allowed)
        if kind not in names and not (kind == "integer" and "number" in names):
            shown = (
                f" {_short(value)}" if kind in ("string", "integer", "number", "boolean") else ""
            )
            raise _SchemaError(where, f"must be {' or '.join(names)}, not {kind}{shown}")
    if "enum" in schema and value not in schema["enum"]:
        raise _SchemaError(
            where, f"is {_short(value)}; expected one of {', '.join(map(str, schema['enum']))}"
        )
    if kind == "string":
        if len(value) < schema.get("minLength", 0):
            raise _SchemaError(where, "must not be empty")
        if len(value) > schema.get("maxLength", len(value)):
            raise _SchemaError(
                where, f"is {len(value)} characters long (at most {schema['maxLength']})"
            )
    elif kind == "integer":
        lo, hi = schema.get("minimum"), schema.get("maximum")
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            raise _SchemaError(where, f"is {_short(value)}, outside {lo}..{hi}")
    elif kind == "object":
        for key in schema.get("required", ()):
            if key not in value:
                raise _SchemaError(where, f"needs field {key!r}")
        for key, sub in schema.get("properties", {}).items():
            if key in value:
                _check(value[key], sub, f"{where}.{key}" if where else key)
    elif kind == "array":
        if len(value) < schema.get("minItems", 0):
            raise _SchemaError(where, "must not be empty")
        if len(value) > schema.get("maxItems", len(value)):
            raise _SchemaError(where, f"has {len(value)} items (at most {schema['maxItems']})")
        items = schema.get("items")
        if items is not None:
            for i, item in enumerate(value):
                _check(item, items, f"{where}[{i}]")


def _short(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 40 else text[:37] + "..."


class _SchemaError(Exception):
    def __init__(self, where: str, why: str) -> None:
        super().__init__(f"field {where!r} {why}" if where else f"the whole file {why}")


def _known(cls: Any, data: dict[str, Any]) -> dict[str, Any]:
    """The keys of `data` that `cls` has (newer writers may add fields; they are ignored)."""
    names = {f.name for f in fields(cls)}
    return {k: v for k, v in data.items() if k in names}


def _named(data: dict[str, Any]) -> dict[str, Any]:
    """Names (of points, nodes, pods, Services) made safe to print; `file` stays a path."""
    return {k: printable(v) if isinstance(v, str) and k != "file" else v for k, v in data.items()}


def manifest_from_json(data: Any, where: str = "manifest.json") -> Manifest:
    """Build a Manifest from parsed JSON, after checking it against MANIFEST_SCHEMA; an
    InputError names the file and the field at fault."""
    try:
        _check(data, MANIFEST_SCHEMA, "")
    except _SchemaError as e:
        raise InputError(f"{where}: {e}") from None
    points = tuple(CapturePoint(**_named(_known(CapturePoint, p))) for p in data["points"])
    services = []
    for s in data.get("services") or ():
        ports = tuple(ServicePort(**_named(_known(ServicePort, p))) for p in s.get("ports") or ())
        eps = tuple(
            ServiceEndpoint(**_named(_known(ServiceEndpoint, e))) for e in s.get("endpoints") or ()
        )
        rest = _named(_known(Service, s))
        rest.update(cluster_ips=tuple(s.get("cluster_ips") or ()), ports=ports, endpoints=eps)
        services.append(Service(**rest))
    return Manifest(
        source=str(data.get("source", "import")),
        created=str(data.get("created", "")),
        points=points,
        services=tuple(services),
        request=dict(data.get("request") or {}),
        warnings=tuple(printable(w) for w in data.get("warnings") or ()),
        extra=dict(data.get("extra") or {}),
    )


def manifest_to_json(m: Manifest) -> dict[str, Any]:
    d = asdict(m)
    return {"schema": SCHEMA, **d}


# Manifests and node facts are small; anything larger is not one (and is not read whole).
MAX_FACT_BYTES = 256 << 20


def read_json(path: str | os.PathLike[str]) -> Any | None:
    """The parsed JSON of `path`, or None when the file does not exist; errors name the file."""
    text = read_text(path)
    return None if text is None else parse_json(text, path)


def parse_json(text: str, path: str | os.PathLike[str]) -> Any:
    """`text` parsed as JSON; errors name `path`."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise InputError(f"{path}: not valid JSON (line {e.lineno}: {e.msg})") from e
    except RecursionError:
        raise InputError(f"{path}: not valid JSON (nested too deeply)") from None


def read_text(path: str | os.PathLike[str], *, tolerant: bool = False) -> str | None:
    """The text of a regular file, or None when it does not exist; errors name the file.

    Never blocks on a FIFO or device (opened non-blocking, then checked to be a regular file).
    `tolerant=True` decodes bytes that are not UTF-8 as U+FFFD (rule dumps carry Latin-1 in
    comments); otherwise such a file is an error.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as e:
        raise InputError(f"{path}: {_os_reason(e)}") from None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise InputError(f"{path}: {_not_regular(st.st_mode)}, not a regular file")
        if st.st_size > MAX_FACT_BYTES:
            raise InputError(f"{path}: {st.st_size} bytes; too large (at most {MAX_FACT_BYTES})")
        try:
            data = f.read()
        except OSError as e:
            raise InputError(f"{path}: {_os_reason(e)}") from None
    try:
        return data.decode("utf-8", "replace" if tolerant else "strict")
    except UnicodeDecodeError as e:
        raise InputError(
            f"{path}: not UTF-8 text (byte {e.start} is 0x{data[e.start]:02x})"
        ) from None


def _os_reason(e: OSError) -> str:
    if e.errno == errno.ELOOP:
        return "a loop of symbolic links"
    if e.errno == errno.EISDIR:
        return "is a directory"
    return (e.strerror or str(e)).lower()


def _not_regular(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "not a file"


def inside_run(run: str | os.PathLike[str], relative: str, what: str) -> Path:
    """RUN/relative, checked to stay inside RUN once symbolic links are followed; `what` names
    the manifest field it came from. A run directory is input: it must not make pathtrace read
    (or name) a file elsewhere, such as ../../x or /etc/passwd."""
    if os.path.isabs(relative):
        raise InputError(f"{what}: {relative!r} is an absolute path; it must be inside the run")
    root = os.path.realpath(run)
    path = os.path.join(run, relative)
    real = os.path.realpath(path)
    if os.path.commonpath([root, real]) != root or real == root:
        raise InputError(f"{what}: {relative!r} leads outside the run directory {run}")
    return Path(path)


def load_manifest(run: str | os.PathLike[str]) -> Manifest:
    """Read RUN/manifest.json; errors name the file and the field."""
    path = Path(run) / "manifest.json"
    text = read_text(path)
    if text is None:
        raise InputError(
            f"{run}: no manifest.json; not a run directory",
            hint="give capture files with --point ROLE:NAME[@NODE]=FILE instead",
        )
    return manifest_from_json(parse_json(text, path), str(path))


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
    """A point's capture file, inside RUN (InputError naming the point's `file` otherwise)."""
    return inside_run(run, point.file, f"{Path(run) / 'manifest.json'}: point {point.name!r} file")


def node_fact(
    run: str | os.PathLike[str], node: str, name: str, directory: str = "nodes"
) -> str | None:
    """The text of RUN/nodes/<node>/<name> (RUN/pods/<point>/<name> with directory="pods"),
    or None when it was not captured. Decoded tolerantly: real dumps carry non-UTF-8 bytes in
    comments."""
    kind = "node" if directory == "nodes" else "point"
    where = f"{Path(run) / 'manifest.json'}: {kind} {node!r}"
    path = inside_run(run, os.path.join(directory, node, name), where)
    return read_fact(path)


def read_fact(path: str | os.PathLike[str]) -> str | None:
    """A rules, conntrack or links dump as text (None when missing): decoded tolerantly, since
    real dumps carry non-UTF-8 bytes in comments, and with no terminal controls left in it, since
    comments and conntrack lines are printed."""
    text = read_text(path, tolerant=True)
    return None if text is None else printable(text, lines=True)

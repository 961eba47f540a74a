"""Request bodies kubectl sends as Kubernetes protobuf, decoded to their JSON form. Pure.

kubectl sends some bodies only as `application/vnd.kubernetes.protobuf` and does not fall back
to JSON on 415 (`auth can-i`'s SelfSubjectAccessReview). The envelope is the 4-byte magic
`k8s\\0` and a runtime.Unknown {typeMeta, raw}; `raw` is the object in the field numbers of
k8s.io/api's generated.proto. Only the kinds listed in `_SCHEMAS` are decoded; answers go back
as JSON, which the client accepts. Malformed input raises ProtobufError, never anything else.
"""

from __future__ import annotations

from typing import Any

MAGIC = b"k8s\x00"

# Message schemas: field number -> (JSON name, nested schema name or "string").
_SCHEMAS: dict[str, dict[int, tuple[str, str]]] = {
    "Unknown": {1: ("typeMeta", "TypeMeta"), 2: ("raw", "bytes")},
    "TypeMeta": {1: ("apiVersion", "string"), 2: ("kind", "string")},
    "SelfSubjectAccessReview": {2: ("spec", "SelfSubjectAccessReviewSpec")},
    "SelfSubjectAccessReviewSpec": {
        1: ("resourceAttributes", "ResourceAttributes"),
        2: ("nonResourceAttributes", "NonResourceAttributes"),
    },
    "ResourceAttributes": {
        1: ("namespace", "string"),
        2: ("verb", "string"),
        3: ("group", "string"),
        4: ("version", "string"),
        5: ("resource", "string"),
        6: ("subresource", "string"),
        7: ("name", "string"),
    },
    "NonResourceAttributes": {1: ("path", "string"), 2: ("verb", "string")},
}
_KINDS = {"SelfSubjectAccessReview"}


class ProtobufError(ValueError):
    pass


def _varint(data: bytes, i: int) -> tuple[int, int]:
    out = shift = 0
    while True:
        if i >= len(data) or shift > 63:
            raise ProtobufError("truncated varint")
        b = data[i]
        i += 1
        out |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return out, i


def _message(data: bytes, schema: str) -> dict[str, Any]:
    fields = _SCHEMAS[schema]
    out: dict[str, Any] = {}
    i = 0
    while i < len(data):
        key, i = _varint(data, i)
        number, wire = key >> 3, key & 7
        if wire == 0:
            _, i = _varint(data, i)
            continue
        if wire == 1:
            i += 8
        elif wire == 5:
            i += 4
        elif wire == 2:
            n, i = _varint(data, i)
            if i + n > len(data):
                raise ProtobufError("truncated field")
            value, i = data[i : i + n], i + n
            if number in fields:
                name, kind = fields[number]
                if kind == "string":
                    out[name] = value.decode("utf-8", "replace")
                elif kind == "bytes":
                    out[name] = value
                else:
                    out[name] = _message(value, kind)
            continue
        else:
            raise ProtobufError(f"unsupported wire type {wire}")
        if i > len(data):
            raise ProtobufError("truncated field")
    return out


def decode(body: bytes) -> dict[str, Any]:
    """The JSON form of a protobuf-encoded object of a kind in `_KINDS`."""
    if not body.startswith(MAGIC):
        raise ProtobufError("not a Kubernetes protobuf object (no k8s magic)")
    unknown = _message(body[len(MAGIC) :], "Unknown")
    tm = unknown.get("typeMeta") or {}
    kind = tm.get("kind", "")
    if kind not in _KINDS:
        raise ProtobufError(f"protobuf bodies of kind {kind or '?'!r} are not served")
    obj = _message(unknown.get("raw", b""), kind)
    return {"apiVersion": tm.get("apiVersion", ""), "kind": kind, **obj}

"""Reading the protobuf request bodies that kubectl's typed clients send.

Since Kubernetes 1.32, client-go's typed clientsets encode request bodies as protobuf
(`application/vnd.kubernetes.protobuf`) and do not fall back to JSON on a 415, so
`kubectl create namespace|configmap|secret` only works if the server reads protobuf.
Answers may stay JSON: those clients accept both. This module decodes the envelope and
the few messages those commands send, from the field numbers of Kubernetes'
`generated.proto`. A non-empty field it does not know is refused (415) rather than
dropped, so nothing a client sent is silently lost.
"""

import base64
from collections.abc import Iterator
from typing import Any

from gatewayflow_dev.kube_emulator.errors import ApiError, unsupported_media_type

CONTENT_TYPE = "application/vnd.kubernetes.protobuf"
_MAGIC = b"k8s\x00"

# A schema maps a field number to (JSON name, type); a type is "string", "bytes",
# "int", "bool", ("repeated", type), ("map", value type) or a nested schema.
Schema = dict[int, tuple[str, Any]]

_OBJECT_META: Schema = {
    1: ("name", "string"),
    2: ("generateName", "string"),
    3: ("namespace", "string"),
    11: ("labels", ("map", "string")),
    12: ("annotations", ("map", "string")),
    14: ("finalizers", ("repeated", "string")),
}
_SCHEMAS: dict[str, Schema] = {
    "Namespace": {
        1: ("metadata", _OBJECT_META),
        2: ("spec", {1: ("finalizers", ("repeated", "string"))}),
    },
    "ConfigMap": {
        1: ("metadata", _OBJECT_META),
        2: ("data", ("map", "string")),
        3: ("binaryData", ("map", "bytes")),
        4: ("immutable", "bool"),
    },
    "Secret": {
        1: ("metadata", _OBJECT_META),
        2: ("data", ("map", "bytes")),
        3: ("type", "string"),
        4: ("stringData", ("map", "string")),
        5: ("immutable", "bool"),
    },
    "DeleteOptions": {
        1: ("gracePeriodSeconds", "int"),
        2: ("preconditions", {1: ("uid", "string"), 2: ("resourceVersion", "string")}),
        3: ("orphanDependents", "bool"),
        4: ("propagationPolicy", "string"),
        5: ("dryRun", ("repeated", "string")),
    },
}
_TYPE_META: Schema = {1: ("apiVersion", "string"), 2: ("kind", "string")}


def _varint(data: bytes, at: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        if at >= len(data):
            raise ValueError("truncated varint")
        byte = data[at]
        value |= (byte & 0x7F) << shift
        at, shift = at + 1, shift + 7
        if not byte & 0x80:
            return value, at


def _fields(data: bytes) -> Iterator[tuple[int, int | bytes]]:
    """(field number, value) pairs of a message in the protobuf wire format."""
    at = 0
    while at < len(data):
        key, at = _varint(data, at)
        number, wire_type = key >> 3, key & 7
        value: int | bytes
        if wire_type == 0:
            value, at = _varint(data, at)
        elif wire_type == 2:
            length, at = _varint(data, at)
            value, at = data[at : at + length], at + length
        elif wire_type in (1, 5):
            size = 8 if wire_type == 1 else 4
            value, at = data[at : at + size], at + size
        else:
            raise ValueError(f"unsupported wire type {wire_type}")
        if at > len(data):
            raise ValueError("truncated field")
        yield number, value


def _is_empty(value: int | bytes) -> bool:
    """Whether a field carries nothing: a zero, or bytes that are empty or a message of
    empty fields (gogo-protobuf writes zero values of non-pointer fields)."""
    if isinstance(value, int):
        return value == 0
    if not value:
        return True
    try:
        return all(_is_empty(inner) for _, inner in _fields(value))
    except ValueError:
        return False


def _scalar(kind: str, value: int | bytes) -> Any:
    if kind == "int":
        assert isinstance(value, int)
        return value - (1 << 64) if value >= 1 << 63 else value
    if kind == "bool":
        return bool(value)
    assert isinstance(value, bytes)
    return value.decode() if kind == "string" else base64.b64encode(value).decode()


def _message(data: bytes, schema: Schema) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for number, value in _fields(data):
        if number not in schema:
            if not _is_empty(value):
                raise ValueError(f"field {number} is not supported")
            continue
        name, kind = schema[number]
        if isinstance(kind, dict):
            assert isinstance(value, bytes)
            out[name] = _message(value, kind)
        elif isinstance(kind, tuple) and kind[0] == "repeated":
            out.setdefault(name, []).append(_scalar(kind[1], value))
        elif isinstance(kind, tuple):  # a map: repeated entries of key 1 and value 2
            assert isinstance(value, bytes)
            entry = dict(_fields(value))
            key = _scalar("string", entry.get(1, b""))
            out.setdefault(name, {})[key] = _scalar(kind[1], entry.get(2, b""))
        else:
            out[name] = _scalar(kind, value)
    return {k: v for k, v in out.items() if v not in ("", 0, False, None, {}, [])}


def decode(body: bytes) -> dict[str, Any]:
    """The JSON form of a protobuf-encoded object: the `k8s\\0` magic, then a
    `runtime.Unknown` whose field 1 is the TypeMeta and field 2 the encoded object."""
    if not body.startswith(_MAGIC):
        raise unsupported_media_type(f"{CONTENT_TYPE} without the k8s envelope")
    try:
        envelope = dict(_fields(body[len(_MAGIC) :]))
        type_meta_bytes, raw = envelope.get(1, b""), envelope.get(2, b"")
        if not isinstance(type_meta_bytes, bytes) or not isinstance(raw, bytes):
            raise ValueError("malformed envelope")
        type_meta = _message(type_meta_bytes, _TYPE_META)
        kind = type_meta.get("kind", "")
        if kind not in _SCHEMAS:
            raise unsupported_media_type(
                f"{CONTENT_TYPE} for {kind or 'this object'} (the emulator reads protobuf "
                f"only for {', '.join(_SCHEMAS)}; send JSON)"
            )
        obj = _message(raw, _SCHEMAS[kind])
    except ValueError as exc:
        raise ApiError(
            415, "UnsupportedMediaType", f"cannot read the protobuf body: {exc}; send JSON"
        ) from exc
    return {**type_meta, **obj}

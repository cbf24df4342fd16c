"""Server-side printing: `meta.k8s.io/v1` Tables, which `kubectl get` asks for.

kubectl requests `Accept: application/json;as=Table;v=v1;g=meta.k8s.io` and prints the
columns the server chose, so the columns here are those a real cluster shows.
"""

import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from gatewayflow_dev.kube_emulator.kinds import Kind

Cell = Callable[[dict[str, Any]], Any]


def age(obj: dict[str, Any]) -> str:
    """How long ago the object was created, written as kubectl writes durations."""
    created = datetime.strptime(obj["metadata"]["creationTimestamp"], "%Y-%m-%dT%H:%M:%S%z")
    seconds = max(0, int(time.time() - created.timestamp()))
    minutes, hours = seconds // 60, seconds // 3600
    if seconds < 120:
        return f"{seconds}s"
    if minutes < 10:
        return f"{minutes}m{seconds % 60}s" if seconds % 60 else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    if hours < 8:
        return f"{hours}h{minutes % 60}m" if minutes % 60 else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    return f"{hours // 24}d"


def _ports(obj: dict[str, Any]) -> str:
    ports = obj.get("spec", {}).get("ports") or []
    return ",".join(f"{p.get('port')}/{p.get('protocol', 'TCP')}" for p in ports) or "<none>"


def _status(obj: dict[str, Any], field: str) -> int:
    return int(obj.get("status", {}).get(field, 0))


_COLUMNS: dict[str, list[tuple[str, Cell]]] = {
    "Namespace": [("Status", lambda o: o.get("status", {}).get("phase", ""))],
    "ConfigMap": [("Data", lambda o: len(o.get("data") or {}) + len(o.get("binaryData") or {}))],
    "Secret": [
        ("Type", lambda o: o.get("type", "Opaque")),
        ("Data", lambda o: len(o.get("data") or {})),
    ],
    "Service": [
        ("Type", lambda o: o.get("spec", {}).get("type", "ClusterIP")),
        ("Port(s)", _ports),
    ],
    "Deployment": [
        ("Ready", lambda o: f"{_status(o, 'readyReplicas')}/{o['spec'].get('replicas', 1)}"),
        ("Up-to-date", lambda o: _status(o, "updatedReplicas")),
        ("Available", lambda o: _status(o, "availableReplicas")),
    ],
    "CronJob": [
        ("Schedule", lambda o: o.get("spec", {}).get("schedule", "")),
        ("Suspend", lambda o: bool(o.get("spec", {}).get("suspend", False))),
    ],
    "Certificate": [("Secret", lambda o: o.get("spec", {}).get("secretName", ""))],
}


def _columns(kind: Kind) -> list[tuple[str, Cell]]:
    return [
        ("Name", lambda o: o["metadata"]["name"]),
        *_COLUMNS.get(kind.kind, []),
        ("Age", age),
    ]


def _row_object(obj: dict[str, Any], include: str) -> dict[str, Any] | None:
    if include == "None":
        return None
    if include == "Object":
        return obj
    return {
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": obj["metadata"],
    }


def table(
    kind: Kind, objects: list[dict[str, Any]], resource_version: str, include: str = "Metadata"
) -> dict[str, Any]:
    """A Table of `objects`; `include` is the includeObject parameter (None, Metadata,
    Object) saying what each row carries besides its cells."""
    columns = _columns(kind)
    rows = []
    for obj in objects:
        row: dict[str, Any] = {"cells": [str(cell(obj)) for _, cell in columns]}
        if (row_object := _row_object(obj, include)) is not None:
            row["object"] = row_object
        rows.append(row)
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": resource_version},
        "columnDefinitions": [
            {
                "name": name,
                "type": "string",
                "format": "name" if name == "Name" else "",
                "description": name,
                "priority": 0,
            }
            for name, _ in columns
        ],
        "rows": rows,
    }

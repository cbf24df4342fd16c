"""Checks that do not ask the code under test whether it worked.

- `traces` finds everything of a gateway that still exists, from raw reads alone: every
  database and collection the MongoDB server lists (pymongo's `list_database_names()`
  and `list_collection_names()`), every user of every database, and every object of
  every resource the Kubernetes API discovers (the official client's plain GETs, no
  label selector). It shares nothing with `gatewayflow.inventory` (no kind list, no
  collection list, no selector), so a blind spot there cannot blind the tests too.
- `history_texts` decodes every payload of a workflow history with the client's data
  converter, so a secret in an activity input or result is as visible as one in a
  failure message.
"""

import json
from collections.abc import Iterator
from typing import Any

from google.protobuf import text_format
from google.protobuf.message import Message
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from pymongo import MongoClient
from pymongo.database import Database
from temporalio.api.common.v1 import Payload
from temporalio.client import Client, WorkflowHistory

from gatewayflow.settings import Settings

SYSTEM_DATABASES = {"admin", "local", "config"}


# -- leaks -----------------------------------------------------------------------------------
def mongo_traces(client: MongoClient[dict[str, Any]], gateway_id: str) -> list[str]:
    """Databases, users and documents of any database on the server that belong to it:
    a database or user whose name holds the id (`-` may be `_`), or a document that holds
    it anywhere (not only as `gatewayId`)."""
    marks = {gateway_id, gateway_id.replace("-", "_")}
    found = []
    for db_name in client.list_database_names():
        db = client[db_name]
        if any(mark in db_name for mark in marks):
            found.append(f"database {db_name}")
        for user in db.command("usersInfo").get("users", []):
            if any(mark in user["user"] for mark in marks):
                found.append(f"user {user['user']} in {db_name}")
        if db_name in SYSTEM_DATABASES:
            continue
        for collection in db.list_collection_names():
            if collection.startswith("system."):
                continue
            count = sum(1 for doc in db[collection].find({}) if _mentions(doc, gateway_id))
            if count:
                found.append(f"{db_name}.{collection}: {count} document(s)")
    return found


def _mentions(value: Any, gateway_id: str) -> bool:
    """Whether the id is anywhere in a document: a field, an array (a permit's holders),
    a key, a nested document."""
    if isinstance(value, str):
        return gateway_id in value
    if isinstance(value, dict):
        return any(gateway_id in str(k) or _mentions(v, gateway_id) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(_mentions(v, gateway_id) for v in value)
    return False


def _get(api: k8s.ApiClient, path: str) -> Any:
    """A plain GET through the official client (its auth and TLS), as JSON."""
    response = api.call_api(*api.param_serialize("GET", path))
    response.read()  # type: ignore[no-untyped-call]
    return json.loads(response.data or b"null")


def discovered_resources(api: k8s.ApiClient) -> Iterator[tuple[str, str]]:
    """(kind, list path) of every listable resource the server's discovery names."""
    versions = [f"/api/{v}" for v in _get(api, "/api")["versions"]]
    for group in _get(api, "/apis")["groups"]:
        versions += [f"/apis/{v['groupVersion']}" for v in group["versions"]]
    for version in versions:
        for resource in _get(api, version)["resources"]:
            if "/" not in resource["name"] and "list" in resource.get("verbs", []):
                yield resource["kind"], f"{version}/{resource['name']}"


def kube_objects(settings: Settings, context: str = "local") -> list[tuple[str, dict[str, Any]]]:
    """(kind, object) of every object of every discovered resource, in all namespaces."""
    api = k8s_config.new_client_from_config(  # type: ignore[no-untyped-call]
        config_file=str(settings.kubeconfig), context=context
    )
    with api:
        return [
            (kind, obj)
            for kind, path in discovered_resources(api)
            for obj in _get(api, path)["items"]
        ]


def kube_owned(
    settings: Settings, gateway_id: str, context: str = "local"
) -> set[tuple[str, str, str]]:
    """(kind, namespace, name) of every object in a namespace whose name holds the id,
    named after it, or labelled with it."""
    return {
        (kind, ns, name)
        for kind, ns, name, _obj in owned(kube_objects(settings, context), gateway_id)
    }


def owned(
    objects: list[tuple[str, dict[str, Any]]], gateway_id: str
) -> list[tuple[str, str, str, dict[str, Any]]]:
    """(kind, namespace, name, object) of those of `objects` that are the gateway's, as
    `kube_owned` counts them: for one listing of a cluster read for many gateways."""
    found = []
    for kind, obj in objects:
        meta = obj.get("metadata") or {}
        name, namespace = meta.get("name", ""), meta.get("namespace") or ""
        labels = (meta.get("labels") or {}).values()
        if gateway_id in name or gateway_id in namespace or gateway_id in labels:
            found.append((kind, namespace, name, obj))
    return found


def kube_traces(settings: Settings, gateway_id: str, context: str = "local") -> list[str]:
    return sorted(
        f"{kind} {namespace + '/' if namespace else ''}{name}"
        for kind, namespace, name in kube_owned(settings, gateway_id, context)
    )


def traces(settings: Settings, client: MongoClient[dict[str, Any]], gateway_id: str) -> list[str]:
    """Everything of the gateway still found on the MongoDB server and in every cluster
    (each context of the kubeconfig: a region)."""
    from kubernetes.config import list_kube_config_contexts

    contexts, _current = list_kube_config_contexts(  # type: ignore[no-untyped-call]
        config_file=str(settings.kubeconfig)
    )
    return mongo_traces(client, gateway_id) + [
        trace
        for context in sorted(c["name"] for c in contexts)
        for trace in kube_traces(settings, gateway_id, context)
    ]


# -- secrets ---------------------------------------------------------------------------------
def _payloads(message: Message) -> Iterator[Payload]:
    """Every Payload inside a protobuf message, at any depth (inputs, results, details,
    heartbeats, memo, headers, search attributes, failure details)."""
    if isinstance(message, Payload):
        yield message
        return
    for field, value in message.ListFields():
        if field.message_type is None:
            continue
        if isinstance(value, Message):
            values = [value]
        elif field.message_type.GetOptions().map_entry:
            values = list(value.values())
        else:  # a repeated field
            values = list(value)
        for item in values:
            if isinstance(item, Message):
                yield from _payloads(item)


async def history_texts(client: Client, history: WorkflowHistory) -> list[str]:
    """Each event as text, its payloads decoded by the client's data converter.

    The JSON of a history holds payloads base64-encoded, where a password is invisible to
    a substring search; here each payload is decoded to its value and rendered as JSON.
    """
    converter = client.data_converter
    texts = []
    for event in history.events:
        parts = [text_format.MessageToString(event, as_utf8=True)]
        for payload in _payloads(event):
            try:
                [value] = await converter.decode([payload])  # codec, then converter
            except (KeyError, RuntimeError):  # an encoding no converter knows: its bytes
                parts.append(payload.data.decode("utf-8", "replace"))
            else:
                parts.append(json.dumps(value, default=str))
        texts.append("\n".join(parts))
    return texts


def mongo_snapshot(db: Database[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Every document of every collection of `db`, and the names of the server's
    databases: equal before and after a read-only command."""
    snapshot = {name: list(db[name].find()) for name in sorted(db.list_collection_names())}
    return {**snapshot, "(databases)": [{"name": n} for n in db.client.list_database_names()]}

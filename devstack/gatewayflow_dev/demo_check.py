"""Show that every part of a running stack answers, the way a user would check it."""

import asyncio
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass

from kubernetes import client as k8s
from kubernetes import config as k8s_config
from pymongo import MongoClient
from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest

from gatewayflow.client import connect
from gatewayflow.domain.redaction import redact_uri
from gatewayflow.settings import Settings


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


def check_stack(settings: Settings) -> list[Check]:
    """One check per part; `settings` must be resolved."""
    checks: list[tuple[str, Callable[[Settings], str]]] = [
        ("Temporal", _temporal),
        ("Temporal UI", _temporal_ui),
        ("MongoDB", _mongo),
        ("Kubernetes", _kube),
    ]
    results = []
    for name, check in checks:
        try:
            results.append(Check(name, True, check(settings)))
        except Exception as exc:
            results.append(Check(name, False, f"{type(exc).__name__}: {exc}"))
    return results


def _temporal(settings: Settings) -> str:
    async def describe() -> str:
        temporal = await connect(settings)
        response = await temporal.workflow_service.describe_namespace(
            DescribeNamespaceRequest(namespace=settings.temporal_namespace)
        )
        return response.namespace_info.name

    return f"namespace {asyncio.run(describe())!r} described at {settings.temporal_address}"


def _temporal_ui(settings: Settings) -> str:
    url = settings.temporal_ui_url or ""
    with urllib.request.urlopen(url, timeout=5) as response:
        return f"GET {url} -> HTTP {response.status}"


def _mongo(settings: Settings) -> str:
    mongo: MongoClient[dict[str, object]] = MongoClient(
        settings.mongodb_uri, serverSelectionTimeoutMS=5000
    )
    with mongo:
        reply = mongo.admin.command("ping")
    return f"ping ok={reply['ok']} at {redact_uri(settings.mongodb_uri)}"


def _kube(settings: Settings) -> str:
    api = k8s_config.new_client_from_config(config_file=str(settings.kubeconfig))  # type: ignore[no-untyped-call]
    with api:
        namespaces = k8s.CoreV1Api(api).list_namespace()
    names = ", ".join(str(ns.metadata.name) for ns in namespaces.items if ns.metadata) or "none"
    return f"namespaces listed with {settings.kubeconfig}: {names}"

"""The Kubernetes kinds a gateway owns, and how to address one object of them.

The set of kinds is fixed (docs/inventory.md), so their API paths are written down here
instead of being discovered from the server on every start. What else a namespace may
hold is not: `Resource` is a kind the server announces through API discovery.
"""

from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class Kind(StrEnum):
    NAMESPACE = "Namespace"
    # First in its namespace: it grants the worker its rights there (deploy/worker.yaml).
    ROLE_BINDING = "RoleBinding"
    CONFIG_MAP = "ConfigMap"
    SECRET = "Secret"
    SERVICE = "Service"
    DEPLOYMENT = "Deployment"
    CRON_JOB = "CronJob"
    APISIX_ROUTE = "ApisixRoute"
    APISIX_PLUGIN_CONFIG = "ApisixPluginConfig"
    APISIX_TLS = "ApisixTls"
    CERTIFICATE = "Certificate"

    @property
    def api_version(self) -> str:
        return _API[self][0]

    @property
    def plural(self) -> str:
        return _API[self][1]

    @property
    def namespaced(self) -> bool:
        return self is not Kind.NAMESPACE

    def collection_path(self, namespace: str | None = None) -> str:
        """The REST path of the kind's collection, in one namespace or across all of them."""
        prefix = "/api/v1" if self.api_version == "v1" else f"/apis/{self.api_version}"
        if self.namespaced and namespace is not None:
            return f"{prefix}/namespaces/{namespace}/{self.plural}"
        return f"{prefix}/{self.plural}"


_API: dict[Kind, tuple[str, str]] = {
    Kind.NAMESPACE: ("v1", "namespaces"),
    Kind.ROLE_BINDING: ("rbac.authorization.k8s.io/v1", "rolebindings"),
    Kind.CONFIG_MAP: ("v1", "configmaps"),
    Kind.SECRET: ("v1", "secrets"),
    Kind.SERVICE: ("v1", "services"),
    Kind.DEPLOYMENT: ("apps/v1", "deployments"),
    Kind.CRON_JOB: ("batch/v1", "cronjobs"),
    Kind.APISIX_ROUTE: ("apisix.apache.org/v2", "apisixroutes"),
    Kind.APISIX_PLUGIN_CONFIG: ("apisix.apache.org/v2", "apisixpluginconfigs"),
    Kind.APISIX_TLS: ("apisix.apache.org/v2", "apisixtlses"),
    Kind.CERTIFICATE: ("cert-manager.io/v1", "certificates"),
}

NAMESPACED_KINDS: tuple[Kind, ...] = tuple(kind for kind in Kind if kind.namespaced)


@dataclass(frozen=True)
class Resource:
    """A namespaced kind the API server serves, as discovery describes it."""

    api_version: str  # "v1" or "<group>/<version>"
    kind: str
    plural: str

    def collection_path(self, namespace: str) -> str:
        prefix = "/api/v1" if self.api_version == "v1" else f"/apis/{self.api_version}"
        return f"{prefix}/namespaces/{namespace}/{self.plural}"


@dataclass(frozen=True)
class ForeignObject:
    """An object in a gateway's namespace that the gateway does not own, of any kind."""

    kind: str
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}"


@dataclass(frozen=True)
class ObjectRef:
    """One object in one cluster: kind, namespace (None for a Namespace) and name."""

    kind: Kind
    namespace: str | None
    name: str

    def __post_init__(self) -> None:
        if self.kind.namespaced != (self.namespace is not None):
            where = "needs a namespace" if self.kind.namespaced else "takes no namespace"
            raise ValueError(f"{self.kind} {self.name} {where}")

    @classmethod
    def of(cls, obj: dict[str, Any]) -> "ObjectRef":
        """The reference of a manifest or a live object."""
        kind = Kind(obj["kind"])
        metadata = obj["metadata"]
        return cls(kind, metadata.get("namespace") if kind.namespaced else None, metadata["name"])

    @property
    def path(self) -> str:
        return f"{self.kind.collection_path(self.namespace)}/{self.name}"

    def __str__(self) -> str:
        if self.namespace is None:
            return f"{self.kind} {self.name}"
        return f"{self.kind} {self.namespace}/{self.name}"

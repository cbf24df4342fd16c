"""Kubernetes kinds, where the API serves each, and how to address one object.

A kind's API path is written down here instead of being discovered from the server on
every start. Which kinds a gateway owns is declared in gatewayflow/ownership.py, and only
there; the constants below are the kinds the code refers to by name. What else a namespace
may hold is not known in advance: `Resource` is a kind the server announces through API
discovery.
"""

from dataclasses import dataclass
from typing import Any, ClassVar

_KNOWN: dict[str, "Kind"] = {}


@dataclass(frozen=True)
class Kind:
    """A kind and where its API serves it. Once made, a kind is known by its name
    (`Kind.named`), so that the manifests and live objects of it read back into refs."""

    name: str  # "Deployment"
    api_version: str  # "v1" or "<group>/<version>"
    plural: str  # the resource's name in its path: "deployments"
    namespaced: bool = True

    NAMESPACE: ClassVar["Kind"]
    # First in its namespace: it grants the worker its rights there (deploy/worker.yaml).
    ROLE_BINDING: ClassVar["Kind"]
    CONFIG_MAP: ClassVar["Kind"]
    SECRET: ClassVar["Kind"]
    SERVICE: ClassVar["Kind"]
    DEPLOYMENT: ClassVar["Kind"]
    CRON_JOB: ClassVar["Kind"]
    APISIX_ROUTE: ClassVar["Kind"]
    APISIX_PLUGIN_CONFIG: ClassVar["Kind"]
    APISIX_TLS: ClassVar["Kind"]
    CERTIFICATE: ClassVar["Kind"]

    def __post_init__(self) -> None:
        known = _KNOWN.setdefault(self.name, self)
        if known != self:
            raise ValueError(f"kind {self.name} is known already, as {known!r}")

    def __str__(self) -> str:
        return self.name

    @classmethod
    def named(cls, name: str) -> "Kind":
        try:
            return _KNOWN[name]
        except KeyError:
            raise ValueError(f"unknown kind {name!r}") from None

    def collection_path(self, namespace: str | None = None) -> str:
        """The REST path of the kind's collection, in one namespace or across all of them."""
        prefix = "/api/v1" if self.api_version == "v1" else f"/apis/{self.api_version}"
        if self.namespaced and namespace is not None:
            return f"{prefix}/namespaces/{namespace}/{self.plural}"
        return f"{prefix}/{self.plural}"


Kind.NAMESPACE = Kind("Namespace", "v1", "namespaces", namespaced=False)
Kind.ROLE_BINDING = Kind("RoleBinding", "rbac.authorization.k8s.io/v1", "rolebindings")
Kind.CONFIG_MAP = Kind("ConfigMap", "v1", "configmaps")
Kind.SECRET = Kind("Secret", "v1", "secrets")
Kind.SERVICE = Kind("Service", "v1", "services")
Kind.DEPLOYMENT = Kind("Deployment", "apps/v1", "deployments")
Kind.CRON_JOB = Kind("CronJob", "batch/v1", "cronjobs")
Kind.APISIX_ROUTE = Kind("ApisixRoute", "apisix.apache.org/v2", "apisixroutes")
Kind.APISIX_PLUGIN_CONFIG = Kind(
    "ApisixPluginConfig", "apisix.apache.org/v2", "apisixpluginconfigs"
)
Kind.APISIX_TLS = Kind("ApisixTls", "apisix.apache.org/v2", "apisixtlses")
Kind.CERTIFICATE = Kind("Certificate", "cert-manager.io/v1", "certificates")


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
        kind = Kind.named(obj["kind"])
        metadata = obj["metadata"]
        return cls(kind, metadata.get("namespace") if kind.namespaced else None, metadata["name"])

    @property
    def path(self) -> str:
        return f"{self.kind.collection_path(self.namespace)}/{self.name}"

    def __str__(self) -> str:
        if self.namespace is None:
            return f"{self.kind} {self.name}"
        return f"{self.kind} {self.namespace}/{self.name}"

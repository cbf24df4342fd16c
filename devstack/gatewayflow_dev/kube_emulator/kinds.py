"""The kinds the emulator serves and the discovery documents that describe them.

kubectl and `kubernetes.dynamic.DynamicClient` learn what a cluster offers from the
discovery documents (`/api`, `/apis`, `/api/v1`, `/apis/<group>/<version>`), so one
registry drives both the routing and the discovery answers.
"""

from dataclasses import dataclass
from typing import Any

VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]
KUBERNETES_VERSION = {"major": "1", "minor": "32", "gitVersion": "v1.32.0"}

# Naming rules of metadata.name, as the real API server applies them per kind.
SUBDOMAIN = "subdomain"  # DNS-1123 subdomain, at most 253 characters
LABEL = "label"  # DNS-1123 label, at most 63 characters
DNS1035 = "dns1035"  # DNS-1035 label: a DNS-1123 label starting with a letter


@dataclass(frozen=True)
class Kind:
    group: str  # "" for the core group
    version: str
    kind: str
    plural: str
    namespaced: bool = True
    short_names: tuple[str, ...] = ()
    name_rule: str = SUBDOMAIN
    max_name_length: int = 253
    # Kinds whose status the server owns: a client's status in create/update is ignored.
    server_status: bool = False
    # Kinds with a `scale` subresource (autoscaling/v1 Scale), which `kubectl scale` uses.
    scalable: bool = False
    # Custom resources (CRDs): their delete answers the object, as for a CRD.
    custom: bool = False
    # Built-in kinds listed by `kubectl get all`.
    in_category_all: bool = False

    @property
    def verbs(self) -> list[str]:
        """The API verbs of the kind; Namespaces have no deletecollection, as in Kubernetes."""
        return [v for v in VERBS if self.kind != "Namespace" or v != "deletecollection"]

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def singular(self) -> str:
        return self.kind.lower()

    @property
    def resource(self) -> str:
        """`plural.group` (or `plural` in the core group), the name used in messages."""
        return f"{self.plural}.{self.group}" if self.group else self.plural


KINDS: tuple[Kind, ...] = (
    Kind(
        "",
        "v1",
        "Namespace",
        "namespaces",
        namespaced=False,
        short_names=("ns",),
        name_rule=LABEL,
        max_name_length=63,
        server_status=True,
    ),
    Kind("", "v1", "ConfigMap", "configmaps", short_names=("cm",)),
    Kind("", "v1", "Secret", "secrets"),
    Kind(
        "",
        "v1",
        "Service",
        "services",
        short_names=("svc",),
        name_rule=DNS1035,
        max_name_length=63,
        in_category_all=True,
    ),
    Kind(
        "apps",
        "v1",
        "Deployment",
        "deployments",
        short_names=("deploy",),
        server_status=True,
        scalable=True,
        in_category_all=True,
    ),
    Kind(
        "batch",
        "v1",
        "CronJob",
        "cronjobs",
        short_names=("cj",),
        max_name_length=52,
        in_category_all=True,
    ),
    Kind(
        "apisix.apache.org", "v2", "ApisixRoute", "apisixroutes", short_names=("ar",), custom=True
    ),
    Kind(
        "apisix.apache.org",
        "v2",
        "ApisixPluginConfig",
        "apisixpluginconfigs",
        short_names=("apc",),
        custom=True,
    ),
    Kind("apisix.apache.org", "v2", "ApisixTls", "apisixtlses", short_names=("atls",), custom=True),
    Kind(
        "cert-manager.io",
        "v1",
        "Certificate",
        "certificates",
        short_names=("cert", "certs"),
        custom=True,
    ),
    # Kinds gatewayflow does not create but that others put in a gateway's namespace; the
    # foreign-object check finds them through discovery. (RoleBinding it does create.)
    Kind("", "v1", "PersistentVolumeClaim", "persistentvolumeclaims", short_names=("pvc",)),
    Kind("", "v1", "ServiceAccount", "serviceaccounts", short_names=("sa",)),
    Kind("batch", "v1", "Job", "jobs", max_name_length=63, in_category_all=True),
    Kind("networking.k8s.io", "v1", "Ingress", "ingresses", short_names=("ing",)),
    Kind("rbac.authorization.k8s.io", "v1", "Role", "roles"),
    Kind("rbac.authorization.k8s.io", "v1", "RoleBinding", "rolebindings"),
    # Cluster-scoped, and never the worker's to write (deploy/worker.yaml's admission policy).
    Kind(
        "rbac.authorization.k8s.io",
        "v1",
        "ClusterRoleBinding",
        "clusterrolebindings",
        namespaced=False,
    ),
)

NAMESPACE = KINDS[0]


def find_kind(group: str, version: str, plural: str) -> Kind | None:
    for kind in KINDS:
        if (kind.group, kind.version, kind.plural) == (group, version, plural):
            return kind
    return None


def kind_of(obj: dict[str, Any]) -> Kind | None:
    """The registered kind of a stored object, from its apiVersion and kind."""
    for kind in KINDS:
        if obj.get("apiVersion") == kind.api_version and obj.get("kind") == kind.kind:
            return kind
    return None


def _group_versions() -> dict[str, list[str]]:
    groups: dict[str, list[str]] = {}
    for kind in KINDS:
        if kind.group and kind.version not in groups.setdefault(kind.group, []):
            groups[kind.group].append(kind.version)
    return groups


def api_versions() -> dict[str, Any]:
    """`GET /api`: the core group's versions."""
    return {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [],
    }


def _api_group(name: str, versions: list[str]) -> dict[str, Any]:
    entries = [{"groupVersion": f"{name}/{v}", "version": v} for v in versions]
    return {"name": name, "versions": entries, "preferredVersion": entries[0]}


def api_group_list() -> dict[str, Any]:
    """`GET /apis`: every named group."""
    return {
        "kind": "APIGroupList",
        "apiVersion": "v1",
        "groups": [_api_group(name, versions) for name, versions in _group_versions().items()],
    }


def api_group(name: str) -> dict[str, Any] | None:
    """`GET /apis/<group>`."""
    versions = _group_versions().get(name)
    if versions is None:
        return None
    return {"kind": "APIGroup", "apiVersion": "v1", **_api_group(name, versions)}


def api_resource_list(group: str, version: str) -> dict[str, Any] | None:
    """`GET /api/v1` or `GET /apis/<group>/<version>`."""
    kinds = [k for k in KINDS if (k.group, k.version) == (group, version)]
    if not kinds:
        return None
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": kinds[0].api_version,
        "resources": [resource for k in kinds for resource in _resources(k)],
    }


def _resources(kind: Kind) -> list[dict[str, Any]]:
    resource: dict[str, Any] = {
        "name": kind.plural,
        "singularName": kind.singular,
        "namespaced": kind.namespaced,
        "kind": kind.kind,
        "verbs": kind.verbs,
    }
    if kind.short_names:
        resource["shortNames"] = list(kind.short_names)
    if kind.in_category_all:
        resource["categories"] = ["all"]
    if not kind.scalable:
        return [resource]
    scale = {
        "name": f"{kind.plural}/scale",
        "singularName": "",
        "namespaced": kind.namespaced,
        "group": "autoscaling",
        "version": "v1",
        "kind": "Scale",
        "verbs": ["get", "patch", "update"],
    }
    return [resource, scale]

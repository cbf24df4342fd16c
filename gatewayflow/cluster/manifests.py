"""Pure builders of the manifests of one gateway (docs/inventory.md).

Every object carries the ownership labels `gatewayflow.dev/gateway=<id>` and
`gatewayflow.dev/installation=<installation>`: they are what allows the adapter to
change or delete it, and nothing without both is ever changed or deleted.
"""

import base64
from typing import Any

from gatewayflow.cluster.kinds import Kind
from gatewayflow.domain import naming
from gatewayflow.domain.documents import CronTrigger, InstanceSpec

Manifest = dict[str, Any]

RESTARTED_AT = "gatewayflow.dev/restartedAt"
"""Pod-template annotation whose change rolls the Deployment, as `kubectl rollout restart`."""

HTTP_PORT = 8000
WILDCARD_TLS_SECRET = {"namespace": "gatewayflow-system", "name": "runtime-wildcard-tls"}
"""The region's wildcard certificate for runtime hosts: platform-managed, shared by gateways."""
CLUSTER_ISSUER = "letsencrypt"
GATEWAY_ROLE = "gatewayflow-gateway"
"""The ClusterRole of deploy/worker.yaml granting the worker its rights in one gateway
namespace; bound there only, by the RoleBinding below."""
TRIGGER_IMAGE = "curlimages/curl:8.10.1"


def labels(installation: str, gateway_id: str) -> dict[str, str]:
    return {
        **naming.owner_labels(installation, gateway_id),
        "app.kubernetes.io/managed-by": "gatewayflow",
    }


def pod_labels(gateway_id: str) -> dict[str, str]:
    """The labels of the gateway's pods and of the selectors that find them: the gateway's
    alone. A Deployment's selector cannot change, and pods belong to their controller
    (ownerReferences), which carries the ownership labels."""
    return {naming.OWNER_LABEL: gateway_id}


def _object(kind: Kind, installation: str, gateway_id: str, name: str, **body: Any) -> Manifest:
    metadata: dict[str, Any] = {"name": name, "labels": labels(installation, gateway_id)}
    if kind.namespaced:
        metadata["namespace"] = naming.namespace(gateway_id)
    return {"apiVersion": kind.api_version, "kind": kind.name, "metadata": metadata, **body}


# Tenant code runs here: the API server admits only pods of the `restricted` standard.
POD_SECURITY = {
    f"pod-security.kubernetes.io/{mode}": "restricted" for mode in ("enforce", "audit", "warn")
}
RESTRICTED_POD = {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}
RESTRICTED_CONTAINER = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}


def namespace(installation: str, gateway_id: str) -> Manifest:
    naming.validate_gateway_id(gateway_id)
    manifest = _object(Kind.NAMESPACE, installation, gateway_id, naming.namespace(gateway_id))
    manifest["metadata"]["labels"].update(POD_SECURITY)
    return manifest


def _restricted_pod(containers: list[dict[str, Any]], **spec: Any) -> dict[str, Any]:
    """A pod spec that passes `restricted` and holds no service account token: tenant
    code has no business with the Kubernetes API."""
    return {
        **spec,
        "automountServiceAccountToken": False,
        "securityContext": dict(RESTRICTED_POD),
        "containers": [{**c, "securityContext": dict(RESTRICTED_CONTAINER)} for c in containers],
    }


def role_binding(installation: str, gateway_id: str, service_account: str) -> Manifest:
    """The worker's rights in this gateway's namespace and nowhere else: `service_account`
    (`<namespace>/<name>`) gets the ClusterRole GATEWAY_ROLE here. Goes with the namespace."""
    account_namespace, _, account = service_account.partition("/")
    return _object(
        Kind.ROLE_BINDING,
        installation,
        gateway_id,
        GATEWAY_ROLE,
        roleRef={
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": GATEWAY_ROLE,
        },
        subjects=[{"kind": "ServiceAccount", "name": account, "namespace": account_namespace}],
    )


def config_map(installation: str, gateway_id: str, region: str) -> Manifest:
    """Non-secret runtime configuration; the database password is in the Secret only."""
    data = {
        "GATEWAY_ID": gateway_id,
        "REGION": region,
        "DB_NAME": naming.runtime_database(gateway_id),
    }
    return _object(
        Kind.CONFIG_MAP, installation, gateway_id, naming.config_map(gateway_id), data=data
    )


def db_secret(installation: str, gateway_id: str, user: str, password: str) -> Manifest:
    data = {
        key: base64.b64encode(value.encode()).decode()
        for key, value in {"username": user, "password": password}.items()
    }
    return _object(
        Kind.SECRET,
        installation,
        gateway_id,
        naming.db_secret(gateway_id),
        type="Opaque",
        data=data,
    )


def deployment(
    installation: str, gateway_id: str, spec: InstanceSpec, restarted_at: str | None = None
) -> Manifest:
    """The runtime; a new `restarted_at` rolls its pods, None leaves the current value alone."""
    secret = naming.db_secret(gateway_id)
    template_metadata: dict[str, Any] = {"labels": pod_labels(gateway_id)}
    if restarted_at is not None:
        template_metadata["annotations"] = {RESTARTED_AT: restarted_at}
    resources = {"cpu": spec.cpu, "memory": spec.memory}
    container = {
        "name": "runtime",
        "image": spec.image,
        "ports": [{"name": "http", "containerPort": HTTP_PORT}],
        "envFrom": [{"configMapRef": {"name": naming.config_map(gateway_id)}}],
        "env": [
            {"name": "DB_USER", "valueFrom": {"secretKeyRef": {"name": secret, "key": "username"}}},
            {
                "name": "DB_PASSWORD",
                "valueFrom": {"secretKeyRef": {"name": secret, "key": "password"}},
            },
        ],
        "resources": {"requests": resources, "limits": resources},
        "readinessProbe": {"httpGet": {"path": "/healthz", "port": "http"}},
    }
    return _object(
        Kind.DEPLOYMENT,
        installation,
        gateway_id,
        naming.deployment(gateway_id),
        spec={
            "replicas": spec.replicas,
            "selector": {"matchLabels": pod_labels(gateway_id)},
            "template": {"metadata": template_metadata, "spec": _restricted_pod([container])},
        },
    )


def service(installation: str, gateway_id: str) -> Manifest:
    return _object(
        Kind.SERVICE,
        installation,
        gateway_id,
        naming.service(gateway_id),
        spec={
            "type": "ClusterIP",
            "selector": pod_labels(gateway_id),
            "ports": [{"name": "http", "port": 80, "targetPort": "http"}],
        },
    )


def cron_job(installation: str, gateway_id: str, trigger: CronTrigger, suspend: bool) -> Manifest:
    """Calls the trigger's function on schedule; `suspend` is flipped by stop and start."""
    url = (
        f"http://{naming.service(gateway_id)}.{naming.namespace(gateway_id)}.svc"
        f"/{trigger.function_name}"
    )
    container = {"name": "trigger", "image": TRIGGER_IMAGE, "args": ["-fsS", "-X", "POST", url]}
    pod = {
        "metadata": {"labels": pod_labels(gateway_id)},
        "spec": _restricted_pod([container], restartPolicy="Never"),
    }
    return _object(
        Kind.CRON_JOB,
        installation,
        gateway_id,
        naming.cron_job(gateway_id, trigger.trigger_id),
        spec={
            "schedule": trigger.schedule,
            "suspend": suspend,
            "concurrencyPolicy": "Forbid",
            "jobTemplate": {
                "metadata": {"labels": pod_labels(gateway_id)},
                "spec": {"template": pod},
            },
        },
    )


def _route(
    installation: str, gateway_id: str, name: str, rule: str, host: str, **extra: Any
) -> Manifest:
    http = {
        "name": rule,
        "match": {"hosts": [host], "paths": ["/*"]},
        "backends": [{"serviceName": naming.service(gateway_id), "servicePort": 80}],
        **extra,
    }
    return _object(Kind.APISIX_ROUTE, installation, gateway_id, name, spec={"http": [http]})


def stage_route(installation: str, gateway_id: str, env: str, host: str) -> Manifest:
    """The route of one stage: its host straight to the runtime Service."""
    return _route(
        installation, gateway_id, naming.stage_route(gateway_id, env), f"stage-{env}", host
    )


def domain_route(
    installation: str, gateway_id: str, env: str, host: str, plugin_config_name: str
) -> Manifest:
    """The runtime domain's route of one environment, through the gateway's plugins."""
    return _route(
        installation,
        gateway_id,
        naming.domain_route(gateway_id, env),
        f"domain-{env}",
        host,
        plugin_config_name=plugin_config_name,
    )


def plugin_config(installation: str, gateway_id: str) -> Manifest:
    plugins = [
        {"name": "cors", "enable": True},
        {"name": "request-id", "enable": True},
    ]
    return _object(
        Kind.APISIX_PLUGIN_CONFIG,
        installation,
        gateway_id,
        naming.plugin_config(gateway_id),
        spec={"plugins": plugins},
    )


def tls(installation: str, gateway_id: str, env: str, host: str) -> Manifest:
    """TLS of a runtime host, served with the region's wildcard certificate."""
    return _object(
        Kind.APISIX_TLS,
        installation,
        gateway_id,
        naming.tls(gateway_id, env),
        spec={"hosts": [host], "secret": dict(WILDCARD_TLS_SECRET)},
    )


def custom_tls(installation: str, gateway_id: str, domain: str) -> Manifest:
    """TLS of the custom domain, served with the Secret that the Certificate fills."""
    secret = {"namespace": naming.namespace(gateway_id), "name": naming.certificate(gateway_id)}
    return _object(
        Kind.APISIX_TLS,
        installation,
        gateway_id,
        naming.custom_tls(gateway_id),
        spec={"hosts": [domain], "secret": secret},
    )


def certificate(installation: str, gateway_id: str, domain: str) -> Manifest:
    """cert-manager Certificate of the custom domain; its Secret carries our label too."""
    return _object(
        Kind.CERTIFICATE,
        installation,
        gateway_id,
        naming.certificate(gateway_id),
        spec={
            "secretName": naming.certificate(gateway_id),
            "dnsNames": [domain],
            "issuerRef": {"name": CLUSTER_ISSUER, "kind": "ClusterIssuer"},
            "secretTemplate": {"labels": naming.owner_labels(installation, gateway_id)},
        },
    )

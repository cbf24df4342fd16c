"""Just enough OpenAPI v3 for `kubectl apply -f` and `kubectl create -f`.

kubectl validates manifests before sending them: it looks in the OpenAPI v3 document of
the object's group-version for a PATCH operation of that kind with a `fieldValidation`
query parameter, and if found leaves validation to the server; otherwise it downloads
the OpenAPI v2 schema and fails without one. The emulator has no schemas, so it publishes
operations without schemas and accepts `fieldValidation` without checking unknown fields.
Without schemas `kubectl apply` computes its patches from its compiled-in types.
"""

from typing import Any

from gatewayflow_dev.kube_emulator.kinds import KINDS, KUBERNETES_VERSION


def _gv_path(group: str, version: str) -> str:
    return f"api/{version}" if not group else f"apis/{group}/{version}"


def root(prefix: str) -> dict[str, Any]:
    """`GET /openapi/v3`: one entry per group-version. client-go requests the entries'
    URLs as given, without the cluster's path prefix, so the prefix is part of them."""
    paths = sorted({_gv_path(k.group, k.version) for k in KINDS})
    return {"paths": {path: {"serverRelativeURL": f"{prefix}/openapi/v3/{path}"} for path in paths}}


def group_version(path: str) -> dict[str, Any] | None:
    """`GET /openapi/v3/<api/v1 | apis/group/version>`: a PATCH operation per kind."""
    kinds = [k for k in KINDS if _gv_path(k.group, k.version) == path]
    if not kinds:
        return None
    operations = {}
    for kind in kinds:
        scope = "/namespaces/{namespace}" if kind.namespaced else ""
        operations[f"/{path}{scope}/{kind.plural}/{{name}}"] = {
            "patch": {
                "operationId": f"patch{kind.kind}",
                "x-kubernetes-group-version-kind": {
                    "group": kind.group,
                    "version": kind.version,
                    "kind": kind.kind,
                },
                "parameters": [
                    {"name": "fieldValidation", "in": "query", "schema": {"type": "string"}}
                ],
                "responses": {"200": {"description": "OK"}},
            }
        }
    return {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": KUBERNETES_VERSION["gitVersion"]},
        "paths": operations,
        "components": {"schemas": {}},
    }

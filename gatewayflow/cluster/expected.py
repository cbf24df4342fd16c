"""What a converged gateway's phase implies in its cluster, and how live objects differ.

Pure: the drift check lists the labelled objects of each region (activities/drift.py) and hands
every gateway's share to `differences`. Started: the whole tree exists, the Deployment's
spec is as applied and the CronJobs run. Stopped: no Deployment, Service or domain route,
and the CronJobs are suspended (the base a stopped gateway keeps is made again by its
next start).
"""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gatewayflow.cluster import manifests
from gatewayflow.cluster.kinds import Kind, ObjectRef
from gatewayflow.domain import naming
from gatewayflow.domain.documents import ApiGateway
from gatewayflow.domain.states import GatewayPhase

Manifest = dict[str, Any]
Live = Mapping[ObjectRef, Manifest]


@dataclass(frozen=True)
class Difference:
    ref: ObjectRef
    problem: str  # "missing", "unexpected", "spec changed", "suspended", "not suspended"

    def __str__(self) -> str:
        return f"{self.ref} {self.problem}"


def _instance(gid: str) -> list[ObjectRef]:
    ns = naming.namespace(gid)
    return [
        ObjectRef(Kind.DEPLOYMENT, ns, naming.deployment(gid)),
        ObjectRef(Kind.SERVICE, ns, naming.service(gid)),
    ]


def _domain_routes(gid: str) -> list[ObjectRef]:
    ns = naming.namespace(gid)
    return [
        ObjectRef(Kind.APISIX_ROUTE, ns, naming.domain_route(gid, env))
        for env in naming.ENVIRONMENTS
    ]


def _cron_jobs(gid: str, trigger_ids: list[str]) -> list[ObjectRef]:
    ns = naming.namespace(gid)
    return [ObjectRef(Kind.CRON_JOB, ns, naming.cron_job(gid, t)) for t in trigger_ids]


def started_objects(gw: ApiGateway, trigger_ids: list[str]) -> list[ObjectRef]:
    """Every object a started gateway has (docs/inventory.md)."""
    gid, ns = gw.gateway_id, naming.namespace(gw.gateway_id)
    refs = [
        ObjectRef(Kind.NAMESPACE, None, ns),
        ObjectRef(Kind.CONFIG_MAP, ns, naming.config_map(gid)),
        ObjectRef(Kind.SECRET, ns, naming.db_secret(gid)),
        *_instance(gid),
        *_cron_jobs(gid, trigger_ids),
        *(
            ObjectRef(Kind.APISIX_ROUTE, ns, naming.stage_route(gid, e))
            for e in naming.ENVIRONMENTS
        ),
        *_domain_routes(gid),
        ObjectRef(Kind.APISIX_PLUGIN_CONFIG, ns, naming.plugin_config(gid)),
        *(ObjectRef(Kind.APISIX_TLS, ns, naming.tls(gid, e)) for e in naming.ENVIRONMENTS),
    ]
    if gw.custom_domain:
        refs.append(ObjectRef(Kind.APISIX_TLS, ns, naming.custom_tls(gid)))
        refs.append(ObjectRef(Kind.CERTIFICATE, ns, naming.certificate(gid)))
    return refs


def stopped_absent(gid: str) -> list[ObjectRef]:
    """What a stopped gateway must not have: the pods and the traffic to them."""
    return [*_instance(gid), *_domain_routes(gid)]


def differences(gw: ApiGateway, trigger_ids: list[str], live: Live) -> list[Difference]:
    """How `live` (the gateway's labelled objects) differs from what its phase implies."""
    gid = gw.gateway_id
    found: list[Difference] = []
    if gw.phase is GatewayPhase.STARTED:
        found += [
            Difference(r, "missing") for r in started_objects(gw, trigger_ids) if r not in live
        ]
        deployment = _instance(gid)[0]
        if deployment in live and not is_subset(
            manifests.deployment(gid, gw.instance)["spec"], live[deployment].get("spec")
        ):
            found.append(Difference(deployment, "spec changed"))
        suspended = True
    elif gw.phase is GatewayPhase.STOPPED:
        found += [Difference(r, "unexpected") for r in stopped_absent(gid) if r in live]
        suspended = False
    else:
        return []
    for ref in _cron_jobs(gid, trigger_ids):
        if ref in live and bool((live[ref].get("spec") or {}).get("suspend")) is suspended:
            found.append(Difference(ref, "suspended" if suspended else "not suspended"))
    return found


def is_subset(wanted: Any, live: Any) -> bool:
    """Whether every field we set has the value we set (the server may add more)."""
    if isinstance(wanted, dict):
        return isinstance(live, dict) and all(is_subset(v, live.get(k)) for k, v in wanted.items())
    if isinstance(wanted, list):
        return (
            isinstance(live, list)
            and len(live) == len(wanted)
            and all(is_subset(w, x) for w, x in zip(wanted, live, strict=True))
        )
    return bool(wanted == live)

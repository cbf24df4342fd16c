"""An installation's identity, claimed, and what it made before it had one, adopted.

Every worker runs both at start-up, before it takes a task (control/worker.py):

- `claim`: the control database is marked as this installation's, or a worker of another
  installation (a different or derived GATEWAYFLOW_INSTALLATION) refuses to start on it;
  and the runtime MongoDB's registry records which control database the installation is,
  so that a second one (a mistyped GATEWAYFLOW_DB beside an explicit installation) refuses
  to start too.
- `adopt`: objects and runtime databases of the versions before installations carry the
  gateway's label (or the `_meta` marker) alone, which no installation owns. Those of a
  gateway whose ApiGateway document is in this control database get this installation's
  label (or registration). Those of gateways that were already gone are left alone: they
  may be another installation's, and `gatewayflow audit` does not list them (README,
  Production: the upgrade). Idempotent, and a no-op once nothing is left to adopt.
"""

import logging
from dataclasses import dataclass, field

from gatewayflow import inventory
from gatewayflow.cluster.errors import ClusterError
from gatewayflow.deps import Deps
from gatewayflow.domain import naming
from gatewayflow.store import installation

log = logging.getLogger("gatewayflow.adoption")


@dataclass
class Adopted:
    objects: list[str] = field(default_factory=list)
    databases: list[str] = field(default_factory=list)
    regions_unreachable: list[str] = field(default_factory=list)


def claim(deps: Deps) -> None:
    """This control database is this installation's, and the only one that is; raises
    InstallationMismatch or InstallationTaken otherwise (nothing else is written)."""
    key = installation.claim(deps.db, deps.settings.installation)
    deps.runtime.ensure_indexes()
    deps.runtime.register_installation(key, deps.settings.db_name)


def adopt(deps: Deps) -> Adopted:
    """Label and register what this installation's gateways own from before installations."""
    ids = (str(v) for v in deps.db["ApiGateway"].distinct("gatewayId"))
    ours = {gid for gid in ids if naming.is_valid_gateway_id(gid)}
    adopted = Adopted()
    for region in inventory.audit_regions(deps):
        try:
            cluster = deps.cluster(region)
            for gid in sorted(cluster.unadopted_gateways() & ours):
                refs = cluster.adopt(gid, deps.ownership.kinds())
                adopted.objects += [str(ref) for ref in refs]
        except ClusterError as err:
            log.warning(
                "adoption: region %s not reached, tried again at the next start: %s", region, err
            )
            adopted.regions_unreachable.append(region)
    unregistered = set(deps.runtime.unregistered())
    for gid in sorted(ours):
        if naming.runtime_database(gid) in unregistered and deps.runtime.adopt(gid):
            adopted.databases.append(naming.runtime_database(gid))
    return adopted

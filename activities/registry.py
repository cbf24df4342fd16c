"""Every activity the worker runs, bound to one shared set of connections."""

from collections.abc import Callable
from typing import Any

from activities.deletion import DeletionActivities
from activities.domain import DomainActivities
from activities.drift import DriftActivities
from activities.gateway import GatewayActivities
from activities.guard import GuardActivities
from activities.instance import InstanceActivities
from activities.permits import PermitActivities
from activities.provision import ProvisionActivities
from activities.reaper import ReaperActivities
from activities.triggers import TriggerActivities
from gatewayflow.deps import Deps
from gatewayflow.settings import Settings


def all_activities(settings: Settings, deps: Deps | None = None) -> list[Callable[..., Any]]:
    deps = deps or Deps(settings)
    gateway = GatewayActivities(deps)
    provision = ProvisionActivities(deps)
    instance = InstanceActivities(deps)
    triggers = TriggerActivities(deps)
    domain = DomainActivities(deps)
    deletion = DeletionActivities(deps)
    drift = DriftActivities(deps)
    permits = PermitActivities(deps)
    guard = GuardActivities(deps)
    reaper = ReaperActivities(deps)
    return [
        gateway.read_intent,
        gateway.begin_operation,
        gateway.set_state,
        gateway.apply_request,
        gateway.record_progress,
        gateway.record_step,
        gateway.wait_for_deletion,
        gateway.unscoped_run_active,
        provision.create_namespace,
        provision.create_database,
        provision.create_stages,
        provision.create_functions,
        provision.create_triggers,
        instance.apply_instance,
        instance.check_instance_ready,
        instance.delete_instance,
        triggers.set_triggers_suspended,
        triggers.delete_triggers,
        domain.set_domain_target,
        domain.converge_domain,
        deletion.delete_functions,
        deletion.delete_stages,
        deletion.delete_database,
        deletion.delete_namespace,
        deletion.finalize_deletion,
        drift.find_drift,
        drift.record_drift_repair,
        permits.acquire_permit,
        permits.release_permit,
        guard.admit_deletion,
        guard.cancel_held_deletion,
        reaper.find_orphans,
        reaper.adopt_orphan,
        reaper.record_reaped,
    ]

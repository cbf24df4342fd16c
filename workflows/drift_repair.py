"""How a gateway's own workflow repairs drift: it re-runs the idempotent operation of its
phase (start for Started, stop for Stopped), serialized with every other operation."""

from collections.abc import Awaitable, Callable

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.drift import DriftActivities
    from gatewayflow.domain.messages import DriftFinding, Intent
    from gatewayflow.domain.states import GatewayPhase
    from gatewayflow.domain.transitions import Decision, GatewayAction
    from workflows.calls import call

REPAIR_BY_PHASE = {
    GatewayPhase.STARTED: GatewayAction.START,
    GatewayPhase.STOPPED: GatewayAction.STOP,
}


async def repair(
    finding: DriftFinding,
    intent: Intent,
    run_action: Callable[[Intent, Decision], Awaitable[str | None]],
) -> str | None:
    """Record the drift, then run the operation; the reason when it failed (the caller
    records it; the next drift check finds what is still wrong and asks again)."""
    action = REPAIR_BY_PHASE.get(intent.phase)
    if action is None or intent.phase is not finding.phase:
        return None  # the phase moved since the check: that operation re-made everything
    what = "; ".join(finding.problems)
    workflow.set_current_details(f"**drift**: {what}: repairing by running {action.value} again")
    await call(
        DriftActivities.record_drift_repair,
        finding,
        summary=f"drift of {finding.gateway_id}: {what}"[:200],
    )
    return await run_action(intent, Decision(action))

"""The intent in the ApiGateway document, as the gateway's workflow reads and writes it.

Every write is a compare-and-set on the state an operation started from: the workflow
never overwrites an intent it did not start from (docs/guarantees.md).
"""

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.gateway import GatewayActivities
    from gatewayflow.domain.messages import Intent, PhaseUpdate, StateUpdate
    from gatewayflow.domain.states import GatewayState
    from workflows import search
    from workflows.calls import call
    from workflows.operations import Operation
    from workflows.steps import OperationStopped


async def read(gateway_id: str) -> Intent:
    return await call(
        GatewayActivities.read_intent, gateway_id, summary=f"read intent of {gateway_id}"
    )


async def begin(operation: Operation, intent: Intent) -> None:
    """Enter the operation's phase, with a fresh progress record of its steps, only while
    the state is still the intent the operation was decided on."""
    gid, phase = intent.gateway_id, operation.during
    began = await call(
        GatewayActivities.begin_operation,
        PhaseUpdate(
            gateway_id=gid,
            phase=phase,
            operation=operation.name,
            total_steps=operation.total,
            expected_state=intent.state,
        ),
        summary=f"{operation.name}: phase -> {phase.value} ({operation.total} steps)",
    )
    if not began:
        raise OperationStopped(f"the state is no longer {intent.state.value}")
    search.upsert(gid, phase=phase.value)


async def set_state(
    gateway_id: str, state: GatewayState, why: str | None, *, expected: GatewayState
) -> bool:
    """Whether the state was still `expected` (and is now `state`, with `why` as the last
    error)."""
    return await call(
        GatewayActivities.set_state,
        StateUpdate(gateway_id=gateway_id, state=state, reason=why, expected_state=expected),
        summary=f"state -> {state.value}" + (f" ({why})" if why else ""),
    )

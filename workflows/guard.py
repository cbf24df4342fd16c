"""The deletion guard, asked before a deletion's first step (before its permit and before
anything is deleted): admitted, or held until an operator releases or cancels it.

As with permits (workflows/permits.py) the guard lives in MongoDB so every worker
shares it: the deletion asks (an activity that never blocks) and, while held, waits in
workflow code, holding no activity slot, until `gatewayflow deletions release|cancel`
signals it (`deletion_guard`, with the operator's reason) or a minute passes (then it
asks again, in case that signal was lost). A held deletion whose history grows long
(the dispatcher's sweep signals it meanwhile) lets its workflow continue as new; the
next run asks again and is held again.
"""

import contextlib
from collections.abc import Callable
from datetime import timedelta
from enum import StrEnum

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.guard import GuardActivities
    from gatewayflow.domain.deletion_guard import held_text
    from gatewayflow.domain.messages import Admission, GuardCancel, GuardRequest
    from workflows import search
    from workflows.calls import call

PATCH = "deletion-guard"
HELD_PHASE = "DeletionHeld"  # the GatewayPhase search attribute while held
SIGNAL = "deletion_guard"
_RECHECK = timedelta(minutes=1)


class Passage(StrEnum):
    ADMITTED = "admitted"  # go on with the deletion
    CANCELLED = "cancelled"  # the intent was given back: read it again
    CONTINUE = "still held; continuing as new"  # the history is long


async def admission(
    request: GuardRequest,
    news: Callable[[], bool],
    reset: Callable[[], None],
    history_long: Callable[[], bool],
) -> Passage:
    """Return once the guard admits this deletion, an operator cancelled it (its intent
    given back), or, still held, the workflow should continue as new."""
    gid, region = request.gateway_id, request.region
    held = False
    while True:
        reset()
        verdict = await call(
            GuardActivities.admit_deletion,
            request,
            summary=f"deletion guard of region {region} for {gid}",
        )
        if verdict.admission is Admission.ADMITTED:
            return Passage.ADMITTED
        if verdict.admission is Admission.CANCELLED:
            why = verdict.reason or "cancelled"
            gave = await call(
                GuardActivities.cancel_held_deletion,
                GuardCancel(gateway_id=gid, region=region, reason=why),
                summary=f"cancel the held deletion of {gid}: {why}",
            )
            if gave.restored is not None:
                workflow.set_current_details(
                    f"deletion **cancelled** by the operator ({why}): "
                    f"state back to {gave.restored.value}"
                )
                return Passage.CANCELLED
            continue
        if not held:
            search.upsert(gid, phase=HELD_PHASE)
            held = True
        workflow.set_current_details(
            "**held** by " + held_text(region, verdict.held, verdict.recent, verdict.window)
        )
        if history_long():
            return Passage.CONTINUE
        with contextlib.suppress(TimeoutError):
            await workflow.wait_condition(news, timeout=_RECHECK)

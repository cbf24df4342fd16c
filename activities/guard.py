"""The deletion guard of each region (gatewayflow/store/deletion_guard.py): its limits are
this worker's GATEWAYFLOW_DELETION_GUARD_* settings; what it admitted and holds lives in
MongoDB, shared by every worker."""

from activities.base import Activities, activity_method
from gatewayflow.domain.deletion_guard import held_text
from gatewayflow.domain.messages import (
    Admission,
    GuardCancel,
    GuardGaveBack,
    GuardRequest,
    GuardVerdict,
)
from gatewayflow.domain.states import GatewayPhase, GatewayState
from gatewayflow.domain.transitions import intent_before_deletion

_BEGUN = (GatewayPhase.DELETING, GatewayPhase.DELETED)


class GuardActivities(Activities):
    @activity_method
    def admit_deletion(self, request: GuardRequest) -> GuardVerdict:
        """Never waits: a held deletion waits in its workflow (holding no activity slot)
        until an operator releases or cancels it."""
        gid, region = request.gateway_id, request.region
        limits = self.deps.guard_limits
        verdict = self.deps.deletion_guard.decide(
            region, gid, limits, began=request.phase in _BEGUN
        )
        if verdict.admission is Admission.HELD:
            waiting = held_text(region, verdict.held, verdict.recent, verdict.window)
            self.deps.gateways.record_progress(gid, waiting_on=waiting)
        return verdict

    @activity_method
    def cancel_held_deletion(self, cancel: GuardCancel) -> GuardGaveBack:
        """Give the gateway back the intent it had before its deletion, read from its
        phase (the deletion never began), then forget the cancellation. `restored` is None
        when the gateway is no longer a held deletion that can go back (its workflow then
        asks the guard again)."""
        gid = cancel.gateway_id
        gw = self.deps.gateways.get(gid)
        restored: GatewayState | None = None
        if gw is not None and gw.state is GatewayState.DELETED:
            state = intent_before_deletion(gw.phase)
            if state is not None and self.deps.gateways.give_back(
                gid, gw.phase, state, cancel.reason
            ):
                restored = state
        elif gw is not None and gw.deletion_cancelled is not None:
            restored = gw.state  # given back by an earlier attempt of this activity
        self.deps.deletion_guard.forget_cancelled(cancel.region, gid)
        return GuardGaveBack(gateway_id=gid, restored=restored)

"""BASELINE, not gatewayflow: the original cron TaskService, re-implemented on our adapters.

The reference the bench compares gatewayflow against (docs/guarantees.md and the README). As in the
original platform:

- a handler fires every second (`@Cron(EVERY_SECOND)`), without waiting for the handler
  of the previous second;
- it claims ONE ApiGateway document with a `lockedAt` optimistic lock
  (`find_one_and_update({state: Deleted, phase != Deleted, lockedAt null or expired},
  {$set: {lockedAt: now}})`), does ONE step, records it and releases the lock; the next
  step waits for a later tick;
- the RuntimeDomain has its own tick loop driven by its own state field: the gateway's
  runtime-domain step only sets `RuntimeDomain.state = Deleted` and comes back on later
  ticks until the domain loop has brought the domain's phase to Deleted;
- a failed step is logged and its lock left to expire after `LOCK_TIMEOUT`.

The work of each step is exactly that of GatewayDeletion: the same activity methods in the
same order (`workflows.operations.DELETE`), run through temporalio's ActivityEnvironment, which only
supplies the activity context (heartbeats go nowhere); nothing here talks to Temporal.
Point it at a database of its own (`settings.db_name`) so the gatewayflow dispatcher
never sees its gateways.
"""

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from pymongo import ReturnDocument
from temporalio.testing import ActivityEnvironment

from activities.deletion import DeletionActivities
from activities.domain import DomainActivities
from activities.gateway import GatewayActivities
from activities.instance import InstanceActivities
from activities.triggers import TriggerActivities
from gatewayflow.deps import Deps
from gatewayflow.domain.documents import ApiGateway, RuntimeDomain, utcnow
from gatewayflow.domain.messages import DomainInput, DomainStep, PhaseUpdate, StepInput
from gatewayflow.domain.states import DomainPhase, DomainState, GatewayPhase
from gatewayflow.domain.transitions import decide_domain
from gatewayflow.settings import Settings
from gatewayflow.store.client import RawDoc
from gatewayflow.store.parsing import parse
from workflows.operations import DELETE

log = logging.getLogger("bench.tick_baseline")

TICK_SECONDS = 1.0
LOCK_TIMEOUT = timedelta(seconds=60)


def claim_query(phase_done: str, now: Any) -> RawDoc:
    """Documents to be deleted that are not done and not locked (or whose lock expired)."""
    return {
        "state": "Deleted",
        "phase": {"$ne": phase_done},
        "$or": [{"lockedAt": None}, {"lockedAt": {"$lt": now - LOCK_TIMEOUT}}],
    }


class TickBaseline:
    def __init__(self, settings: Settings) -> None:
        self.deps = Deps(settings)
        self._env = ActivityEnvironment()
        self._gateway = GatewayActivities(self.deps)
        self._domain = DomainActivities(self.deps)
        # The instances whose methods DELETE's steps name.
        self._activities = [
            TriggerActivities(self.deps),
            DeletionActivities(self.deps),
            InstanceActivities(self.deps),
        ]
        self.ticks = 0
        self.activity_calls = 0  # a claim that only finds "still waiting" makes none

    def connect(self) -> None:
        """Connect (Deps creates the indexes) before the first tick, as at start-up."""
        self.deps.db.command("ping")

    # -- the lock -----------------------------------------------------------------------

    def _claim(self, collection: str, phase_done: str) -> RawDoc | None:
        now = utcnow()
        return self.deps.db[collection].find_one_and_update(
            claim_query(phase_done, now),
            {"$set": {"lockedAt": now}},
            return_document=ReturnDocument.AFTER,
        )

    def _release(self, collection: str, gateway_id: str) -> None:
        self.deps.db[collection].update_one({"gatewayId": gateway_id}, {"$set": {"lockedAt": None}})

    # -- the two tick handlers ----------------------------------------------------------

    def gateway_tick(self) -> None:
        raw = self._claim("ApiGateway", GatewayPhase.DELETED.value)
        if raw is None:
            return
        gateway = parse(ApiGateway, raw)
        try:
            self._gateway_step(gateway)
        except Exception:
            log.exception(
                "deletion step of %s failed; lock kept until it expires", gateway.gateway_id
            )
            return
        self._release("ApiGateway", gateway.gateway_id)

    def domain_tick(self) -> None:
        raw = self._claim("RuntimeDomain", DomainPhase.DELETED.value)
        if raw is None:
            return
        domain = parse(RuntimeDomain, raw)
        action = decide_domain(domain.state, domain.phase)
        try:
            self._run(
                self._domain.converge_domain,
                DomainStep(gateway_id=domain.gateway_id, region=domain.region, action=action.value),
            )
        except Exception:
            log.exception("RuntimeDomain %s: %s failed", domain.gateway_id, action.value)
            return
        self._release("RuntimeDomain", domain.gateway_id)

    # -- one step -----------------------------------------------------------------------

    def _run(self, activity: Callable[[Any], object], arg: object) -> None:
        self._env.run(activity, arg)
        self.activity_calls += 1

    def _gateway_step(self, gateway: ApiGateway) -> None:
        gid = gateway.gateway_id
        if gateway.phase is not GatewayPhase.DELETING:
            self._run(
                self._gateway.begin_operation,
                PhaseUpdate(
                    gateway_id=gid,
                    phase=GatewayPhase.DELETING,
                    operation="delete",
                    total_steps=DELETE.total,
                    expected_state=gateway.state,
                ),
            )
            return
        completed = set(gateway.progress.completed)
        step = next(s for s in DELETE.steps if s.name not in completed)
        step_input = DELETE.input(step, gid, gateway.region)
        if step.domain is not None:
            self._runtime_domain_step(gateway, step_input)
        else:
            self._run(self._bound(step.activity), step_input)

    def _bound(self, activity: Callable[..., object]) -> Callable[[Any], object]:
        """The method of the instance whose class defines `activity`."""
        name = activity.__name__
        owner = next(a for a in self._activities if getattr(type(a), name, None) is activity)
        bound: Callable[[Any], object] = getattr(owner, name)
        return bound

    def _runtime_domain_step(self, gateway: ApiGateway, step_input: StepInput) -> None:
        """Hand over to the domain loop, then come back each tick until its phase is Deleted."""
        gid, region = gateway.gateway_id, gateway.region
        domain = self.deps.domains.get(gid)
        if domain is None:
            self._run(self._gateway.record_step, step_input)
        elif domain.state is not DomainState.DELETED:
            self._run(
                self._domain.set_domain_target,
                DomainInput(gateway_id=gid, region=region, target=DomainState.DELETED),
            )
        elif domain.phase is DomainPhase.DELETED:
            self._run(
                self._domain.converge_domain,
                DomainStep(
                    gateway_id=gid,
                    region=region,
                    action=decide_domain(domain.state, domain.phase).value,
                ),
            )
            self._run(self._gateway.record_step, step_input)
        # else: the domain loop has not got there yet; look again on a later tick.

    # -- the cron -----------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Fire both handlers every TICK_SECONDS until `stop`, as `@Cron(EVERY_SECOND)` does."""
        loop = asyncio.get_running_loop()
        running: set[asyncio.Future[None]] = set()
        next_tick = loop.time()
        while not stop.is_set():
            self.ticks += 1
            for handler in (self.gateway_tick, self.domain_tick):
                task = asyncio.ensure_future(asyncio.to_thread(handler))
                running.add(task)
                task.add_done_callback(running.discard)
            next_tick += TICK_SECONDS
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=max(0.0, next_tick - loop.time()))
        await asyncio.gather(*running, return_exceptions=True)

"""The Temporal Schedules of the periodic work: the drift check and the orphan reaper.

Created (or brought up to date) idempotently by every worker at start-up, so `gatewayflow
up` and `python worker.py` both leave them in place. One schedule per task queue: any
number of workers share one check per interval, and an overlapping run is skipped.
An interval of 0 removes the schedule.
"""

import logging
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleUpdate,
    ScheduleUpdateInput,
)
from temporalio.service import RPCError, RPCStatusCode

from gatewayflow.domain.messages import ReapInput
from gatewayflow.settings import Settings
from workflows.drift import DriftCheck
from workflows.reaper import OrphanReaper

log = logging.getLogger("gatewayflow.schedules")


def drift_schedule_id(settings: Settings) -> str:
    return f"drift-check/{settings.task_queue}"


def reaper_schedule_id(settings: Settings) -> str:
    return f"orphan-reaper/{settings.task_queue}"


def _schedule(
    settings: Settings, workflow: Callable[..., Any], arg: object, wid: str, every: float
) -> Schedule:
    return Schedule(
        action=ScheduleActionStartWorkflow(
            workflow,
            arg,
            id=wid,
            task_queue=settings.task_queue,
            execution_timeout=timedelta(hours=1),
        ),
        spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=timedelta(seconds=every))]),
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
    )


def wanted(settings: Settings) -> dict[str, Schedule | None]:
    """Schedule id -> the schedule these settings ask for (None: none at all)."""
    drift, reap = settings.drift_interval_seconds, settings.reap_interval_seconds
    return {
        drift_schedule_id(settings): _schedule(
            settings, DriftCheck.run, [], drift_schedule_id(settings), drift
        )
        if drift > 0
        else None,
        reaper_schedule_id(settings): _schedule(
            settings, OrphanReaper.run, ReapInput(), reaper_schedule_id(settings), reap
        )
        if reap > 0
        else None,
    }


async def ensure_schedules(client: Client, settings: Settings) -> None:
    """Create each schedule, or update an existing one to these settings."""
    for sid, schedule in wanted(settings).items():
        handle = client.get_schedule_handle(sid)
        if schedule is None:
            await _delete(client, sid)
            continue
        try:
            await client.create_schedule(sid, schedule)
            log.info("schedule %s created", sid)
        except ScheduleAlreadyRunningError:

            def update(_: ScheduleUpdateInput, new: Schedule = schedule) -> ScheduleUpdate:
                return ScheduleUpdate(schedule=new)

            await handle.update(update)


async def remove_schedules(client: Client, settings: Settings) -> None:
    """Delete this task queue's schedules (tests, or a deployment going away)."""
    for sid in wanted(settings):
        await _delete(client, sid)


async def _delete(client: Client, sid: str) -> None:
    try:
        await client.get_schedule_handle(sid).delete()
    except RPCError as err:
        if err.status is not RPCStatusCode.NOT_FOUND:
            raise

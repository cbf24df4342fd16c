"""The engine bound: workflows shaped like one deletion whose activities do nothing.

`NoopChain` runs `before` no-op activities, one child NoopChain for the next level, then
`after` activities: the same count of activities and child workflows, in the same order
around the child, as the histories of one real deletion (see `throughput.deletion_shape`).
What it takes to run N of them is what Temporal and a Python worker cost on this machine.
"""

from dataclasses import dataclass
from datetime import timedelta

from temporalio import activity, workflow


@dataclass
class Level:
    """Activities one workflow of the deletion schedules before and after its child."""

    before: int
    after: int


@dataclass
class ChainInput:
    levels: list[Level]


@activity.defn
def noop(number: int) -> int:
    return number


@workflow.defn(name="NoopChain")
class NoopChain:
    @workflow.run
    async def run(self, input: ChainInput) -> int:
        level, rest = input.levels[0], input.levels[1:]
        done = await self._activities(level.before)
        if rest:
            done += await workflow.execute_child_workflow(
                NoopChain.run, ChainInput(rest), id=f"{workflow.info().workflow_id}/child"
            )
        return done + await self._activities(level.after)

    async def _activities(self, count: int) -> int:
        for number in range(count):
            await workflow.execute_activity(
                noop, number, start_to_close_timeout=timedelta(seconds=30)
            )
        return count

"""Scale: deletion latency with few and with many unrelated gateways in MongoDB.

The unrelated gateways are inserted raw, converged and idle (state Running, phase
Started), before the worker of that database first starts: its change feed starts from
now, so they get no workflows, as the brief of this measurement asks. The hot queries of a
deletion (and the tick baseline's claim) are explained with the many present, to show
whether an index serves them.
"""

import asyncio
from dataclasses import dataclass

from bench.context import Bench
from bench.stats import Distribution
from bench.tick_baseline import claim_query
from gatewayflow.domain.documents import ApiGateway, utcnow
from gatewayflow.domain.states import GatewayPhase, GatewayState
from gatewayflow.domain.transitions import GatewayAction, decide
from gatewayflow.settings import Settings
from gatewayflow.store.client import Db, RawDoc
from gatewayflow.store.indexes import ensure_indexes

BATCH = 1000


@dataclass(frozen=True)
class ScaleRun:
    unrelated: int
    latency: Distribution


@dataclass(frozen=True)
class QueryPlan:
    system: str
    """"gatewayflow", or "tick baseline" for the original design's claim."""
    query: str
    stages: list[str]
    indexed: bool


@dataclass(frozen=True)
class ScaleResult:
    count: int
    runs: list[ScaleRun]
    ratio_p50: float
    """p50 with the most unrelated gateways / p50 with the fewest."""
    ratio_p95: float
    plans: list[QueryPlan]
    """Explained with the most unrelated gateways present."""


def insert_unrelated(db: Db, count: int) -> None:
    for start in range(0, count, BATCH):
        db["ApiGateway"].insert_many(
            [
                ApiGateway(
                    gateway_id=f"idle-{n:05d}",
                    state=GatewayState.RUNNING,
                    phase=GatewayPhase.STARTED,
                ).to_mongo()
                for n in range(start, min(start + BATCH, count))
            ]
        )


def _stages(plan: object) -> list[str]:
    if isinstance(plan, dict):
        own = [plan["stage"]] if "stage" in plan else []
        return own + [s for value in plan.values() for s in _stages(value)]
    if isinstance(plan, list):
        return [s for item in plan for s in _stages(item)]
    return []


def explain_hot_queries(db: Db, gateway_id: str) -> list[QueryPlan]:
    """The queries a deletion sends most, plus the sweep's and the baseline's claim."""
    pending = [
        p.value
        for p in GatewayPhase
        if decide(GatewayState.DELETED, p).action is not GatewayAction.NONE
    ]
    gatewayflow = "gatewayflow"
    queries: list[tuple[str, str, str, RawDoc]] = [
        (
            gatewayflow,
            "ApiGateway by gatewayId (read_intent, progress)",
            "ApiGateway",
            {"gatewayId": gateway_id},
        ),
        (
            gatewayflow,
            "ApiGateway phase compare-and-set (complete_step)",
            "ApiGateway",
            {"gatewayId": gateway_id, "phase": {"$in": [GatewayPhase.DELETING.value]}},
        ),
        (
            gatewayflow,
            "CloudFunction by gatewayId (delete_functions)",
            "CloudFunction",
            {"gatewayId": gateway_id},
        ),
        (
            gatewayflow,
            "sweep: state Deleted, phase pending",
            "ApiGateway",
            {"state": GatewayState.DELETED.value, "phase": {"$in": pending}},
        ),
        (
            "tick baseline",
            "claim: state, phase $ne, lockedAt $or",
            "ApiGateway",
            claim_query(GatewayPhase.DELETED.value, utcnow()),
        ),
    ]
    plans = []
    for system, name, collection, query in queries:
        explained = db.command(
            "explain", {"find": collection, "filter": query}, verbosity="queryPlanner"
        )
        stages = _stages(explained["queryPlanner"]["winningPlan"])
        indexed = "COLLSCAN" not in stages and bool({"IXSCAN", "IDHACK"} & set(stages))
        plans.append(QueryPlan(system, name, stages, indexed))
    return plans


async def _run(bench: Bench, unrelated: int, count: int) -> tuple[ScaleRun, Settings]:
    settings = bench.scoped(f"scale-{unrelated}")
    db = bench.db(settings)
    await asyncio.to_thread(ensure_indexes, db)
    await asyncio.to_thread(insert_unrelated, db, unrelated)
    worker = bench.worker_process(settings)
    await asyncio.to_thread(worker.start)
    try:
        ids = [f"scale{unrelated}-{n:02d}" for n in range(count)]
        await bench.provision(settings, ids)
        samples = [await bench.delete_and_time(settings, gid) for gid in ids]
    finally:
        await asyncio.to_thread(worker.stop)
    return ScaleRun(unrelated, Distribution.of(samples)), settings


async def measure(bench: Bench, unrelated: tuple[int, int], count: int) -> ScaleResult:
    few, _ = await _run(bench, unrelated[0], count)
    many, settings = await _run(bench, unrelated[1], count)
    plans = await asyncio.to_thread(explain_hot_queries, bench.db(settings), "idle-00000")
    return ScaleResult(
        count=count,
        runs=[few, many],
        ratio_p50=many.latency.p50 / few.latency.p50,
        ratio_p95=many.latency.p95 / few.latency.p95,
        plans=plans,
    )

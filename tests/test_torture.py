"""The short torture run of `make test`: the state machine of tests/torture on a stack of
its own, two episodes from a fixed seed (the seed decides every rule drawn: the same two
episodes each time), with zero violations and its kills and faults fired.

`make torture` runs it for longer (TORTURE_SECONDS) from any seed (TORTURE_SEED). Below
it, positive controls of the checks it relies on: each is shown a breach and must say so.
"""

import math
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pymongo import MongoClient

from gatewayflow.domain.states import GatewayState
from gatewayflow.settings import Settings
from tests.emulator_admin import OpItem
from tests.torture.checks import deleted_once, over_the_limit
from tests.torture.model import Model
from tests.torture.run import run
from tests.torture.watch import Watch

SHORT_EPISODES = 2
SHORT_SEED = 17


@pytest.mark.timeout(1200)  # a failure is not shrunk here: `make torture` with its seed does
def test_short_seeded_torture_run() -> None:
    figures = run(
        math.inf, SHORT_SEED, steps=8, episodes=SHORT_EPISODES, shrink_seconds=0, results=None
    )
    assert figures["passed"], figures["first_failure"]
    assert figures["violations"] == {}
    assert figures["episodes"] == SHORT_EPISODES
    # Each episode ends with its deletions under process kills and cluster faults.
    assert sum(figures["kills"].values()) >= SHORT_EPISODES, figures["kills"]
    assert sum(figures["faults"].values()) >= 1, figures["faults"]
    assert figures["deletions"] >= 1


# -- the change-stream watch must see what it writes, and say when it cannot --------------


@pytest.fixture
def watched(stack: Settings) -> Iterator[tuple[MongoClient[dict[str, Any]], str]]:
    client: MongoClient[dict[str, Any]] = MongoClient(stack.mongodb_uri)
    db_name = f"torture_watch_{uuid.uuid4().hex[:8]}"
    yield client, db_name
    client.drop_database(db_name)
    client.close()


def test_a_watch_sees_its_marker(watched: tuple[MongoClient[dict[str, Any]], str]) -> None:
    watch = Watch(*watched)
    watch.start()
    try:
        watch.settle()
        assert watch.blind == []
    finally:
        watch.stop()


def test_a_watch_that_stopped_seeing_is_blind(
    watched: tuple[MongoClient[dict[str, Any]], str],
) -> None:
    watch = Watch(*watched)
    watch.start()
    watch.stop()  # the stream no longer read, as a hung or dead thread leaves it
    watch.settle(timeout=2.0)
    assert len(watch.blind) == 1 and "not seen within 2s" in watch.blind[0]


def test_a_watch_that_cannot_resume_is_blind(
    watched: tuple[MongoClient[dict[str, Any]], str],
) -> None:
    """Resuming from a place the server does not know (as after a restart that lost its
    history) leaves a gap: blind, and watching again from now."""
    watch = Watch(*watched, _token={"_data": "00"})
    watch.start()
    try:
        assert len(watch.blind) == 1 and "cannot resume" in watch.blind[0]
        watch.settle()
        assert len(watch.blind) == 1  # from now on it sees again
    finally:
        watch.stop()


# -- the deletion limit and "deleted once", read from the op log ---------------------------

T0 = datetime(2030, 1, 1, tzinfo=UTC)


def op(seq: int, verb: str, kind: str, gid: str, name: str = "", region: str = "local") -> OpItem:
    ns = f"gw-{gid}"
    return {
        "seq": seq,
        "time": (T0 + timedelta(seconds=seq)).isoformat(),
        "region": region,
        "verb": verb,
        "kind": kind,
        "namespace": None if kind == "Namespace" else ns,
        "name": ns if kind == "Namespace" else name or gid,
        "labels": {},
    }


def deletion(gid: str, start: int, end: int, region: str = "local") -> list[OpItem]:
    return [
        op(start, "delete", "CronJob", gid, f"{gid}-trigger-t1", region),
        op(start + 1, "delete", "Namespace", gid, region=region),
        op(end, "removed", "Namespace", gid, region=region),
    ]


def test_three_deletions_at_once_break_a_limit_of_two() -> None:
    began = {gid: T0 for gid in ("a", "b", "c")}
    # a and b overlap, c starts once a's namespace is gone: within the limit.
    oplog = sorted(
        deletion("a", 1, 10) + deletion("b", 3, 20) + deletion("c", 11, 30),
        key=lambda item: item["seq"],
    )
    assert over_the_limit(oplog, began, {}, 2) == []
    # c starts before a's namespace is gone: three at once.
    oplog = sorted(
        deletion("a", 1, 10) + deletion("b", 3, 20) + deletion("c", 5, 30),
        key=lambda item: item["seq"],
    )
    [problem] = over_the_limit(oplog, began, {}, 2)
    assert "3 deletions at once" in problem and "a, b, c" in problem
    # The torture's own removal of its foreign object is not the deletion beginning.
    foreign = op(5, "delete", "ConfigMap", "c", "foreign-1")
    oplog = sorted(
        deletion("a", 1, 10) + deletion("b", 3, 20) + [foreign] + deletion("c", 11, 30),
        key=lambda item: item["seq"],
    )
    assert over_the_limit(oplog, began, {}, 2, {("ConfigMap", "gw-c", "foreign-1")}) == []
    assert len(over_the_limit(oplog, began, {}, 2)) == 1
    # Other regions have limits of their own.
    oplog = sorted(
        deletion("a", 1, 10) + deletion("b", 3, 20) + deletion("c", 5, 30, region="eu"),
        key=lambda item: item["seq"],
    )
    assert over_the_limit(oplog, began, {}, 2) == []


def test_a_namespace_deleted_twice_or_while_live_is_found() -> None:
    model = Model()
    live, gone = model.add("live"), model.add("gone")
    gone.intent, gone.done = GatewayState.DELETED, True
    made = [op(1, "create", "Namespace", "live"), op(2, "create", "Namespace", "gone")]
    assert deleted_once([*made, *deletion("gone", 3, 9)], model) == []
    twice = [*made, *deletion("gone", 3, 9), op(10, "delete", "Namespace", "gone")]
    assert [p.split(":")[0] for p in deleted_once(twice, model)] == ["gone (intent Deleted, done)"]
    while_live = [*made, *deletion("gone", 3, 9), op(11, "delete", "Namespace", "live")]
    assert [p.split(" ")[0] for p in deleted_once(while_live, model)] == [live.gateway_id]
    never = [*made]
    assert len(deleted_once(never, model)) == 1  # gone, but its namespace never deleted

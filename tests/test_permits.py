"""Deletion permits on the MongoDB-wire server: first come, first served, never more
holders than the limit, whatever the number of concurrent callers, and a holder whose
gateway is gone does not keep its permit."""

from concurrent.futures import ThreadPoolExecutor
from typing import Any

from pymongo.database import Database

from gatewayflow.domain.documents import ApiGateway
from gatewayflow.domain.states import GatewayPhase, GatewayState
from gatewayflow.store.gateways import GatewayRepository
from gatewayflow.store.indexes import ensure_indexes
from gatewayflow.store.permits import PermitRepository

LIMIT = 3


def deleting(db: Database[dict[str, Any]], ids: list[str]) -> None:
    ensure_indexes(db)
    gateways = GatewayRepository(db)
    for gid in ids:
        gateways.insert(
            ApiGateway(gateway_id=gid, state=GatewayState.DELETED, phase=GatewayPhase.DELETING)
        )


def test_queue_is_served_in_order_within_the_limit(mongo: Database[dict[str, Any]]) -> None:
    permits = PermitRepository(mongo)
    ids = [f"g{i}" for i in range(8)]
    deleting(mongo, ids)
    places = [permits.acquire("eu", gid, LIMIT) for gid in ids]
    assert [p.granted for p in places] == [True] * LIMIT + [False] * (len(ids) - LIMIT)
    assert [p.ahead for p in places[LIMIT:]] == list(range(len(ids) - LIMIT))
    assert permits.acquire("eu", "g0", LIMIT).granted  # asking again keeps the permit
    released = permits.release("eu", "g1", LIMIT)
    assert released.promoted == ["g3"]  # the head of the queue, not whoever asks next
    assert not permits.acquire("eu", "g7", LIMIT).granted
    assert permits.acquire("eu", "g3", LIMIT).granted
    assert permits.place("local", "g0", LIMIT).running == 0  # regions are separate


def test_concurrent_callers_never_exceed_the_limit(mongo: Database[dict[str, Any]]) -> None:
    permits = PermitRepository(mongo)
    ids = [f"c{i}" for i in range(30)]
    deleting(mongo, ids)
    with ThreadPoolExecutor(max_workers=10) as pool:
        list(pool.map(lambda gid: permits.acquire("eu", gid, LIMIT), ids))
        [doc] = permits.regions()
        assert len(doc["holders"]) == LIMIT
        assert sorted(doc["holders"] + doc["queue"]) == sorted(ids)
        # Everyone releases as soon as they hold one, concurrently, until all are through.
        done: set[str] = set()
        while len(done) < len(ids):
            [doc] = permits.regions()
            assert len(doc["holders"]) <= LIMIT
            holders = [h for h in doc["holders"] if h not in done]
            list(pool.map(lambda gid: permits.release("eu", gid, LIMIT), holders))
            done.update(holders)
    [doc] = permits.regions()
    assert doc["holders"] == [] and doc["queue"] == []


def test_a_holder_whose_gateway_is_gone_is_dropped(mongo: Database[dict[str, Any]]) -> None:
    permits = PermitRepository(mongo)
    deleting(mongo, ["a", "b", "c", "d"])
    for gid in ("a", "b", "c", "d"):
        permits.acquire("eu", gid, LIMIT)
    # "a" was terminated after its document went: its release never comes.
    mongo["ApiGateway"].delete_one({"gatewayId": "a"})
    assert permits.acquire("eu", "d", LIMIT).granted

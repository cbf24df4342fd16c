"""The order checkers the crash, fault, scale and deletion tests rely on, given crafted logs.

A checker that passes every log would pass every test that uses it: here each is shown a
correct deletion and each way of getting the order wrong.
"""

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.emulator_admin import OpItem, delete_counts, deletion_order_violations
from tests.timeline import Event, mongo_events, oplog_events, order_violations

GID = "shop"
NS = f"gw-{GID}"
START = datetime(2026, 1, 1, tzinfo=UTC)

# What each step of docs/operations.md deletes in the cluster, in order.
STEP_OBJECTS: list[list[tuple[str, str]]] = [
    [("CronJob", f"{GID}-trigger-t1")],
    [],
    [("ApisixRoute", f"{GID}-stage-{env}") for env in ("dev", "staging", "prod")],
    [
        *((("ApisixRoute", f"{GID}-{env}")) for env in ("dev", "staging", "prod")),
        ("ApisixPluginConfig", f"{GID}-plugins"),
        ("ApisixTls", f"{GID}-dev-tls"),
        ("Certificate", f"{GID}-runtime-custom-domain"),
    ],
    [("Deployment", GID), ("Service", GID)],
    [("Secret", f"{GID}-db")],
    [("ConfigMap", f"{GID}-config"), ("Namespace", NS)],
]


def entry(seq: int, verb: str, kind: str, name: str) -> OpItem:
    return {
        "seq": seq,
        "time": (START + timedelta(milliseconds=10 * seq)).isoformat(),
        "region": "local",
        "verb": verb,
        "kind": kind,
        "namespace": None if kind == "Namespace" else NS,
        "name": name,
        "labels": {"gatewayflow.dev/gateway": GID},
    }


def good_log() -> list[OpItem]:
    """Each step deletes its objects and waits until they are removed."""
    log: list[OpItem] = []
    for objects in STEP_OBJECTS:
        for verb in ("delete", "removed"):
            for kind, name in objects:
                log.append(entry(len(log) + 1, verb, kind, name))
    return log


def moved(
    log: list[OpItem], what: tuple[str, str, str], before: tuple[str, str, str]
) -> list[OpItem]:
    """The log with entry `what` (verb, kind, name) moved just before `before`; renumbered."""
    items = [dict(item) for item in log]

    def key(item: OpItem) -> tuple[str, str, str]:
        return (item["verb"], item["kind"], item["name"])

    entry_ = next(item for item in items if key(item) == what)
    items.remove(entry_)
    items.insert(next(i for i, item in enumerate(items) if key(item) == before), entry_)
    return [entry(n, i["verb"], i["kind"], i["name"]) for n, i in enumerate(items, start=1)]


def test_a_correct_deletion_passes() -> None:
    log = good_log()
    assert deletion_order_violations(GID, log) == []
    assert set(delete_counts(log).values()) == {1}
    assert order_violations(oplog_events(GID, log)) == []


@pytest.mark.parametrize(
    ("what", "before", "complaint"),
    [
        (  # pods stopped while traffic still reaches them
            ("delete", "Deployment", GID),
            ("removed", "ApisixRoute", f"{GID}-dev"),
            "step 5 deleted Deployment",
        ),
        (  # the database step before the pods are gone
            ("delete", "Secret", f"{GID}-db"),
            ("removed", "Deployment", GID),
            "step 6 deleted Secret",
        ),
        (  # the namespace (and all in it) while the routes are still there
            ("delete", "Namespace", NS),
            ("delete", "CronJob", f"{GID}-trigger-t1"),
            "before step 1 had removed CronJob",
        ),
        (  # something deleted after the namespace
            ("delete", "ConfigMap", f"{GID}-config"),
            ("removed", "Namespace", NS),
            "the last delete is ConfigMap",
        ),
    ],
)
def test_each_wrong_order_is_named(
    what: tuple[str, str, str], before: tuple[str, str, str], complaint: str
) -> None:
    log = moved(good_log(), what, before)
    problems = deletion_order_violations(GID, log)
    assert any(complaint in problem for problem in problems), problems
    if what[1] != "ConfigMap":  # the ConfigMap and the Namespace share step 7
        assert order_violations(oplog_events(GID, log)) != []


def test_a_namespace_deleted_twice_or_never_is_named() -> None:
    log = good_log()
    twice = [*log, entry(len(log) + 1, "delete", "Namespace", NS)]
    assert "the Namespace was deleted 2 times" in deletion_order_violations(GID, twice)
    never = [item for item in log if item["kind"] != "Namespace"]
    assert "the Namespace was deleted 0 times" in deletion_order_violations(GID, never)
    assert delete_counts(twice)[("Namespace", NS)] == 2


def change(op: str, coll: str | None, seconds: float, db: str = "gf") -> dict[str, Any]:
    ns = {"db": db} if coll is None else {"db": db, "coll": coll}
    return {
        "operationType": op,
        "ns": ns,
        "documentKey": {"_id": coll},
        "wallTime": (START + timedelta(seconds=seconds)).replace(tzinfo=None),
    }


def test_mongo_events_are_placed_at_their_steps() -> None:
    changes = [
        change("delete", "CronTrigger", 1),
        change("insert", "Stage", 2),  # not a deletion
        change("delete", "Stage", 3),
        change("delete", "Other", 3),  # not ours
        change("dropDatabase", None, 4, db="gw_shop"),
        change("dropDatabase", None, 4, db="gw_other"),
        change("delete", "ApiGateway", 5),
    ]
    events = mongo_events(changes, "gf", "gw_shop")
    assert [(event.step, event.what) for event in events] == [
        (1, "delete CronTrigger CronTrigger"),
        (3, "delete Stage Stage"),
        (6, "drop database gw_shop"),
        (8, "delete ApiGateway ApiGateway"),
    ]
    assert order_violations(events) == []


def test_both_stores_on_one_clock() -> None:
    """The Deployment removed at 0.5 s: the runtime database may go after it, not before."""
    pods_gone = Event(START + timedelta(seconds=0.5), 5, "removed Deployment shop")
    after = mongo_events([change("dropDatabase", None, 0.6, db="gw_shop")], "gf", "gw_shop")
    before = mongo_events([change("dropDatabase", None, 0.4, db="gw_shop")], "gf", "gw_shop")
    assert order_violations([pods_gone, *after]) == []
    [problem] = order_violations([pods_gone, *before])
    assert problem.startswith("step 6 (drop database gw_shop") and "step 5" in problem
    # Triggers' documents go before functions', whichever store is read.
    swapped = [change("delete", "CloudFunction", 1), change("delete", "CronTrigger", 2)]
    assert order_violations(mongo_events(swapped, "gf", "gw_shop")) != []

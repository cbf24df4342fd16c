"""Adding a kind is one change in one place: an object of a new kind added to a copy of the
declaration of what a gateway owns (gatewayflow/ownership.py) is made by the create, found
missing by the drift check, listed by `plan` and removed by the deletion.

The expectations are written by hand here: the object's name and where it must appear.
"""

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import timedelta
from typing import Any

from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException
from temporalio.worker import Worker

from activities.registry import all_activities
from control.plan import plan
from control.schedules import ensure_schedules
from gatewayflow.cluster.kinds import Kind
from gatewayflow.deps import Deps
from gatewayflow.domain import naming
from gatewayflow.domain.states import GatewayState
from gatewayflow.domain.transitions import Request
from gatewayflow.ownership import OWNERSHIP, Owned, Owner, Ownership
from gatewayflow.settings import Settings
from tests.emulator_admin import EmulatorAdmin
from tests.gateway_harness import Harness, harness, unique_id
from workflows.registry import ALL_WORKFLOWS

# A kind no gateway owned before, served by the Kubernetes emulator.
SERVICE_ACCOUNT = Kind("ServiceAccount", "v1", "serviceaccounts")


def account_name(gateway_id: str) -> str:
    return f"{gateway_id}-runtime"


def runtime_account(owner: Owner, _key: str) -> dict[str, Any]:
    gid = owner.gateway_id
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {
            "name": account_name(gid),
            "namespace": naming.namespace(gid),
            "labels": naming.owner_labels(owner.installation, gid),
        },
    }


# The one change: the base of a gateway has one more object.
WITH_ACCOUNT = replace(
    OWNERSHIP,
    base=replace(
        OWNERSHIP.base,
        objects=(
            *OWNERSHIP.base.objects,
            Owned(SERVICE_ACCOUNT, lambda gid, _key: account_name(gid), runtime_account),
        ),
    ),
)


@contextlib.asynccontextmanager
async def worker_owning(h: Harness, ownership: Ownership) -> AsyncIterator[Deps]:
    """A worker on the harness's task queue whose activities read `ownership`."""
    deps = Deps(h.settings, ownership=ownership)
    with ThreadPoolExecutor(max_workers=h.settings.max_concurrent_activities) as executor:
        worker = Worker(
            h.client,
            task_queue=h.settings.task_queue,
            workflows=list(ALL_WORKFLOWS),
            activities=all_activities(h.settings, deps),
            activity_executor=executor,
            max_heartbeat_throttle_interval=timedelta(seconds=1),
        )
        async with worker:
            yield deps


async def eventually(what: str, check: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not await asyncio.to_thread(check):
        assert time.monotonic() < deadline, f"{what} within {timeout:.0f}s"
        await asyncio.sleep(0.2)


async def test_a_kind_added_to_the_declaration_is_made_checked_planned_and_removed(
    stack: Settings,
) -> None:
    admin = EmulatorAdmin.of(stack)
    api = k8s_config.new_client_from_config(  # type: ignore[no-untyped-call]
        config_file=str(stack.kubeconfig), context="local"
    )
    core = k8s.CoreV1Api(api)
    async with harness(stack, worker=False, drift_interval_seconds=2.0) as h:
        gid = unique_id("owns")
        ns, name = naming.namespace(gid), account_name(gid)

        def account() -> Any:
            try:
                return core.read_namespaced_service_account(name, ns)
            except ApiException as err:
                if err.status == 404:
                    return None
                raise

        async with worker_owning(h, WITH_ACCOUNT) as deps:
            # Made by the create, with the gateway's label.
            await h.create(gid)
            await h.wait_for(gid, GatewayState.RUNNING)
            made = account()
            assert made is not None, "the create made the ServiceAccount"
            assert made.metadata.labels[naming.OWNER_LABEL] == gid
            assert made.metadata.labels[naming.INSTALLATION_LABEL] == h.settings.installation

            # Deleted by hand: the drift check finds it missing and the start makes it again.
            await ensure_schedules(h.client, h.settings)
            core.delete_namespaced_service_account(name, ns)
            await eventually(
                "the drift check recorded it",
                lambda: (
                    f"ServiceAccount {ns}/{name} missing"
                    in h.gateways.require(gid).progress.drift.repaired
                ),
            )
            await eventually("it is back", lambda: account() is not None)
            await h.wait_for(gid, GatewayState.RUNNING)

            # Listed by `plan` in the step that removes the base, before the Namespace;
            # the declaration the plan reads is the one it is given.
            steps = await asyncio.to_thread(plan, deps, gid)
            (base,) = [step for step in steps if step.name == "namespace"]
            listed = [(item.kind, item.name) for item in base.items]
            assert ("ServiceAccount", name) in listed
            assert listed.index(("ServiceAccount", name)) < listed.index(("Namespace", ns))
            default = await asyncio.to_thread(plan, h.deps, gid)
            assert ("ServiceAccount", name) not in [
                (item.kind, item.name) for step in default for item in step.items
            ]

            # Removed by the deletion itself, before the Namespace goes.
            since = admin.last_seq()
            await h.request(gid, Request.DELETE)
            await h.wait_for(gid, GatewayState.DELETED)
            oplog = admin.oplog(gid, since=since)
            deletes = [(i["kind"], i["name"]) for i in oplog if i["verb"] == "delete"]
            assert ("ServiceAccount", name) in deletes
            assert deletes.index(("ServiceAccount", name)) < deletes.index(("Namespace", ns))
            assert account() is None
            assert await h.traces(gid) == []
    api.close()

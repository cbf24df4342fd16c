"""The deletion guard: a script that sets a whole region to Deleted is held before the
first step of the deletions past the guard, until an operator releases or cancels them.

On the session stack with small thresholds (settings, as an operator would set them):
the reproduction is one raw `updateMany({}, {$set: {state: "Deleted"}})` over every
gateway of the harness's region.
"""

import asyncio
from typing import Any

import pytest
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException

from gatewayflow.domain import naming
from gatewayflow.domain.states import GatewayPhase, GatewayState
from gatewayflow.settings import Settings
from tests.gateway_harness import Harness, harness, unique_id

pytestmark = pytest.mark.asyncio(loop_scope="session")

COUNT = 2  # more than this many deletions within the window ...
SHARE = 0.25  # ... and more than this share of the region's gateways: held
GATEWAYS = 6
GUARD: dict[str, Any] = {
    "deletion_guard_count": COUNT,
    "deletion_guard_share": SHARE,
    "deletion_guard_window_seconds": 600.0,
}


def namespaces_left(settings: Settings, ids: list[str]) -> list[str]:
    """The gateways whose namespace still exists, read from the cluster."""
    api = k8s_config.new_client_from_config(  # type: ignore[no-untyped-call]
        config_file=str(settings.kubeconfig), context="local"
    )
    left = []
    with api:
        core = k8s.CoreV1Api(api)
        for gid in ids:
            try:
                core.read_namespace(naming.namespace(gid))
            except ApiException as err:
                if err.status == 404:
                    continue
                raise
            left.append(gid)
    return left


def held(h: Harness, gid: str) -> bool:
    """Deleted, not begun, and saying in its progress that the guard holds it."""
    gw = h.gateways.get(gid)
    return (
        gw is not None
        and gw.state is GatewayState.DELETED
        and gw.phase not in (GatewayPhase.DELETING, GatewayPhase.DELETED)
        and "deletion guard" in (gw.progress.waiting_on or "")
    )


async def settled(
    h: Harness, ids: list[str], timeout: float = 120.0
) -> tuple[list[str], list[str]]:
    """Wait until every gateway is gone or held; (gone, held)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        gone = [gid for gid in ids if await asyncio.to_thread(h.gateways.get, gid) is None]
        waiting = [gid for gid in ids if await asyncio.to_thread(held, h, gid)]
        if len(gone) + len(waiting) == len(ids) or loop.time() > deadline:
            return gone, waiting
        await asyncio.sleep(0.2)


async def started_gateways(h: Harness, n: int, prefix: str) -> list[str]:
    ids = [unique_id(f"{prefix}{i}") for i in range(n)]
    await asyncio.gather(*(h.create(gid, functions=1, triggers=1) for gid in ids))
    await asyncio.gather(*(h.wait_for(gid, GatewayState.RUNNING) for gid in ids))
    return ids


async def test_a_script_that_deletes_the_region_is_held(stack: Settings) -> None:
    async with harness(stack, **GUARD) as h:
        ids = await started_gateways(h, GATEWAYS, "guard")
        # The bad script: every gateway of the region, at once.
        await asyncio.to_thread(
            h.deps.db["ApiGateway"].update_many, {}, {"$set": {"state": "Deleted"}}
        )
        gone, waiting = await settled(h, ids)
        left = await asyncio.to_thread(namespaces_left, h.settings, ids)
        assert len(left) == GATEWAYS - COUNT, (
            f"{GATEWAYS - len(left)} of {GATEWAYS} namespaces gone: {sorted(set(ids) - set(left))}"
        )
        assert len(gone) == COUNT and sorted(waiting) == sorted(left)

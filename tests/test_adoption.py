"""Upgrading to installations: what the versions before them left keeps working.

Those versions labelled objects with the gateway alone, marked a runtime database with
`_meta` alone and ran a gateway's workflow as `gateway/<id>`. A worker's start adopts
the first two for every gateway whose document is in its control database, and asks such
a workflow to hand over to `gateway/<installation>/<id>`; a request sent meanwhile to the
new id waits for that hand-over instead of acting beside it. What belongs to no gateway of
the installation is left as it is. And a worker pointed at a database of another
installation refuses to start.
"""

import asyncio
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.dynamic import DynamicClient
from temporalio.client import WorkflowExecutionStatus

from control import reaper
from control.worker import run_worker
from gatewayflow.domain import naming
from gatewayflow.domain.messages import GatewayInput
from gatewayflow.domain.states import GatewayPhase, GatewayState
from gatewayflow.domain.transitions import Request
from gatewayflow.settings import Settings
from gatewayflow.store.databases import REGISTRY, REGISTRY_DATABASE
from gatewayflow.store.errors import InstallationMismatch, InstallationTaken
from tests.conftest import stack_env
from tests.gateway_harness import Harness, harness, running_worker, unique_id
from tests.oracles import kube_objects
from workflows import search
from workflows.gateway import GatewayWorkflow

pytestmark = pytest.mark.asyncio(loop_scope="session")

REPO = Path(__file__).resolve().parent.parent


def labelled(settings: Settings, gid: str) -> list[tuple[str, dict[str, Any]]]:
    """(kind, object) of everything carrying the gateway's label, by raw reads."""
    return [
        (kind, obj)
        for kind, obj in kube_objects(settings)
        if ((obj.get("metadata") or {}).get("labels") or {}).get(naming.OWNER_LABEL) == gid
    ]


def installations_of(settings: Settings, gid: str) -> set[str | None]:
    return {
        ((obj["metadata"].get("labels") or {}).get(naming.INSTALLATION_LABEL))
        for _kind, obj in labelled(settings, gid)
    }


def as_before_installations(h: Harness, gid: str) -> None:
    """What a version before installations left: the gateway's label alone on its
    objects, and its runtime database known by its `_meta` marker alone."""
    api = k8s_config.new_client_from_config(  # type: ignore[no-untyped-call]
        config_file=str(h.settings.kubeconfig), context="local"
    )
    with api:
        dynamic = DynamicClient(api)  # type: ignore[no-untyped-call]
        for _kind, obj in labelled(h.settings, gid):
            resource = dynamic.resources.get(api_version=obj["apiVersion"], kind=obj["kind"])
            resource.patch(
                name=obj["metadata"]["name"],
                namespace=obj["metadata"].get("namespace"),
                body={"metadata": {"labels": {naming.INSTALLATION_LABEL: None}}},
                content_type="application/merge-patch+json",
            )
    registry = h.deps.runtime._client[REGISTRY_DATABASE][REGISTRY]
    registry.delete_one({"_id": naming.runtime_database(gid)})
    assert installations_of(h.settings, gid) == {None}
    assert not h.deps.runtime.owned(gid)


async def with_unscoped_workflow(h: Harness, gid: str) -> str:
    """The gateway's workflow as those versions ran it: `gateway/<id>`, idle."""
    scoped = naming.gateway_workflow_id(h.settings.installation, gid)
    await h.client.get_workflow_handle(scoped).terminate("as before installations")
    unscoped = naming.unscoped_gateway_workflow_id(gid)
    handle = await h.client.start_workflow(
        GatewayWorkflow.run,
        GatewayInput(gateway_id=gid),
        id=unscoped,
        task_queue=h.settings.task_queue,
        search_attributes=search.for_gateway(gid),
    )
    async with asyncio.timeout(30):
        while True:
            progress = await handle.query(GatewayWorkflow.progress)
            if progress is not None and progress.detail.startswith("converged"):
                return unscoped
            await asyncio.sleep(0.1)


async def status(h: Harness, workflow_id: str) -> WorkflowExecutionStatus | None:
    return await h.workflow_status(workflow_id)


async def until(what: str, check: Any, timeout: float = 60.0) -> None:
    async with asyncio.timeout(timeout):
        while not await check():
            await asyncio.sleep(0.2)


async def test_a_worker_start_adopts_its_gateways_and_leaves_everything_else(
    stack: Settings,
) -> None:
    async with harness(stack) as h:
        gid = unique_id("legacy")
        await h.create(gid)
        await h.wait_for(gid, GatewayState.RUNNING)
        as_before_installations(h, gid)
        unscoped = await with_unscoped_workflow(h, gid)
        # Leftovers of a gateway already gone before the upgrade: no document says whose.
        gone = unique_id("gone")
        core = k8s.CoreV1Api(
            k8s_config.new_client_from_config(  # type: ignore[no-untyped-call]
                config_file=str(h.settings.kubeconfig), context="local"
            )
        )
        gone_labels = {naming.OWNER_LABEL: gone}
        core.create_namespace(
            k8s.V1Namespace(
                metadata=k8s.V1ObjectMeta(name=naming.namespace(gone), labels=gone_labels)
            )
        )
        gone_db = h.deps.runtime._client[naming.runtime_database(gone)]
        gone_db["_meta"].insert_one({"_id": "gateway", "gatewayId": gone})
        try:
            async with running_worker(h.settings, h.client):  # a worker (re)started
                scoped = naming.gateway_workflow_id(h.settings.installation, gid)

                async def adopted() -> bool:
                    return (
                        installations_of(h.settings, gid) == {h.settings.installation}
                        and h.deps.runtime.owned(gid)
                        and await status(h, unscoped) is WorkflowExecutionStatus.COMPLETED
                        and await status(h, scoped) is WorkflowExecutionStatus.RUNNING
                    )

                await until("adopted", adopted)
                gw = await asyncio.to_thread(h.gateways.require, gid)
                assert (gw.state, gw.phase) == (GatewayState.RUNNING, GatewayPhase.STARTED)
                result = await h.client.get_workflow_handle(unscoped).result()
                assert result == f"gateway {gid} handed over to {scoped}"

                # Not the installation's: left without its label, and no orphan of it.
                assert installations_of(h.settings, gone) == {None}
                assert not h.deps.runtime.owned(gone)
                assert gone not in {o.gateway_id for o in reaper.dry_run(h.deps)}

                # The adopted gateway lives on: stopped and deleted the usual way.
                await h.request(gid, Request.STOP)
                await h.wait_for(gid, GatewayState.STOPPED)
                await h.request(gid, Request.DELETE)
                await h.wait_for(gid, GatewayState.DELETED)
                assert await h.traces(gid) == []
        finally:
            core.delete_namespace(naming.namespace(gone))
            h.deps.runtime._client.drop_database(naming.runtime_database(gone))


async def test_a_request_to_the_new_id_waits_for_the_old_run_to_hand_over(
    stack: Settings,
) -> None:
    """The dispatcher and the CLI send to `gateway/<installation>/<id>` at once: the run
    they start acts only once `gateway/<id>` has handed over, never beside it."""
    async with harness(stack) as h:
        gid = unique_id("handover")
        await h.create(gid)
        await h.wait_for(gid, GatewayState.RUNNING)
        unscoped = await with_unscoped_workflow(h, gid)

        await h.request(gid, Request.STOP)
        await h.wait_for(gid, GatewayState.STOPPED)

        assert await status(h, unscoped) is WorkflowExecutionStatus.COMPLETED
        scoped = naming.gateway_workflow_id(h.settings.installation, gid)
        assert await status(h, scoped) is WorkflowExecutionStatus.RUNNING
        history = await h.client.get_workflow_handle(unscoped).fetch_history()
        operations = [
            e.activity_task_scheduled_event_attributes.activity_type.name
            for e in history.events
            if e.HasField("activity_task_scheduled_event_attributes")
        ]
        assert "begin_operation" not in operations  # the old run stopped nothing itself


async def test_a_worker_refuses_a_database_of_another_installation(stack: Settings) -> None:
    name = f"a-{uuid.uuid4().hex[:6]}"
    async with harness(stack, worker=False, installation_name=name) as h:
        mine = h.settings
        async with running_worker(mine, h.client):
            pass  # claims the database for installation a-...

        # The same database under another installation id: refused, named.
        other = mine.model_copy(update={"installation_name": "b-other"})
        with pytest.raises(InstallationMismatch, match="belongs to installation 'a-"):
            await run_worker(other, stop=asyncio.Event())
        # Unset, the id derived from GATEWAYFLOW_DB is not the one recorded either.
        derived = mine.model_copy(update={"installation_name": None})
        with pytest.raises(InstallationMismatch, match="GATEWAYFLOW_INSTALLATION"):
            await run_worker(derived, stop=asyncio.Event())

        # A mistyped GATEWAYFLOW_DB beside an explicit installation: refused too.
        typo = mine.model_copy(update={"db_name": f"{mine.db_name}x"})
        try:
            with pytest.raises(InstallationTaken, match=f"'{mine.db_name}'"):
                await run_worker(typo, stop=asyncio.Event())
            # `python worker.py` says so in one line and exits non-zero.
            done = await asyncio.to_thread(
                subprocess.run,
                [sys.executable, "worker.py"],
                env=stack_env(typo),
                cwd=REPO,
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert done.returncode != 0
            assert f"is already the installation of another control database ('{mine.db_name}'" in (
                done.stderr
            )
            assert "Traceback" not in done.stderr
        finally:
            h.deps.db.client.drop_database(typo.db_name)

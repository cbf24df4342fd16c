"""Gateway lifecycle end to end: real Temporal, real MongoDB-wire server, the emulator."""

import asyncio
import base64
import json
import logging

import pytest
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from temporalio.client import WorkflowHistory

from activities.provision import trigger_docs
from gatewayflow.cluster.kinds import Kind, ObjectRef
from gatewayflow.domain import naming
from gatewayflow.domain.documents import COLLECTIONS, ApiGateway
from gatewayflow.domain.errors import GatewayflowError
from gatewayflow.domain.states import DomainPhase, GatewayPhase, GatewayState
from gatewayflow.domain.transitions import Request
from gatewayflow.settings import Settings
from tests.gateway_harness import Harness, harness, unique_id
from tests.oracles import history_texts, kube_owned
from workflows import operations as ops
from workflows.operations import Operation

pytestmark = pytest.mark.asyncio(loop_scope="session")


def expected_objects(
    gid: str, triggers: int, custom_domain: bool
) -> set[tuple[str, str | None, str]]:
    """docs/inventory.md, exactly."""
    ns = naming.namespace(gid)
    objects = {
        ("Namespace", None, ns),
        ("RoleBinding", ns, "gatewayflow-gateway"),
        ("ConfigMap", ns, f"{gid}-config"),
        ("Deployment", ns, gid),
        ("Service", ns, gid),
        ("Secret", ns, f"{gid}-db"),
        ("ApisixPluginConfig", ns, f"{gid}-plugins"),
    }
    for env in ("dev", "staging", "prod"):
        objects |= {
            ("ApisixRoute", ns, f"{gid}-stage-{env}"),
            ("ApisixRoute", ns, f"{gid}-{env}"),
            ("ApisixTls", ns, f"{gid}-{env}-tls"),
        }
    for trigger in trigger_docs(gid, triggers, 2):
        objects.add(("CronJob", ns, f"{gid}-trigger-{trigger.trigger_id}"))
    if custom_domain:
        objects |= {
            ("ApisixTls", ns, f"{gid}-custom-tls"),
            ("Certificate", ns, f"{gid}-runtime-custom-domain"),
        }
    return objects


def ran(gw: ApiGateway | None, operation: Operation) -> None:
    """The Mongo document shows the operation's steps done, in their declared order."""
    assert gw is not None
    progress = gw.progress
    assert progress.operation == operation.name
    assert progress.completed == [step.name for step in operation.steps]
    assert progress.step_number == progress.total_steps == operation.total


def owned_objects(h: Harness, gid: str) -> set[tuple[str, str | None, str]]:
    """Every object of any kind the API serves that is the gateway's (the oracle's view)."""
    return {(kind, ns or None, name) for kind, ns, name in kube_owned(h.settings, gid)}


async def test_create_provisions_exactly_the_inventory(stack: Settings) -> None:
    async with harness(stack) as h:
        gid = unique_id("life")
        await h.create(gid, custom_domain="api.example.com", triggers=2)
        gw = await h.wait_for(gid, GatewayState.RUNNING)
        assert gw is not None and gw.phase is GatewayPhase.STARTED
        ran(gw, ops.START)  # created, then started
        assert owned_objects(h, gid) == expected_objects(gid, 2, custom_domain=True)
        counts = h.deps.children.counts(gid)
        assert counts == {
            "ApiGateway": 1,
            "RuntimeDomain": 1,
            "Database": 1,
            "Stage": 3,
            "Environment": 3,
            "ClientApp": 3,
            "CloudFunction": 2,
            "CronTrigger": 2,
        }
        assert set(counts) == set(COLLECTIONS)
        assert h.deps.runtime.exists(gid)
        domain = h.deps.domains.get(gid)
        assert domain is not None and domain.phase is DomainPhase.CREATED


async def test_the_password_stays_in_the_secret(
    stack: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    """Through a whole life (create, stop, start, delete) the runtime database password
    is in no workflow payload of any history (decoded, not base64), no document and no
    log line of the worker."""
    caplog.set_level(logging.INFO)
    async with harness(stack) as h:
        gid = unique_id("secret")
        await h.create(gid, custom_domain="api.example.com")
        await h.wait_for(gid, GatewayState.RUNNING)
        api = k8s_config.new_client_from_config(  # type: ignore[no-untyped-call]
            config_file=str(stack.kubeconfig), context="local"
        )
        with api:
            secret = k8s.CoreV1Api(api).read_namespaced_secret(
                naming.db_secret(gid), naming.namespace(gid)
            )
        password = base64.b64decode((secret.data or {})["password"]).decode()
        assert len(password) >= 16
        documents = [doc for c in COLLECTIONS for doc in h.deps.db[c].find({"gatewayId": gid})]
        assert {doc["gatewayId"] for doc in h.deps.db["Database"].find()} == {gid}
        assert password not in json.dumps(documents, default=str)

        await h.request(gid, Request.STOP)
        await h.wait_for(gid, GatewayState.STOPPED)
        await h.request(gid, Request.START)
        await h.wait_for(gid, GatewayState.RUNNING)
        await h.request(gid, Request.DELETE)
        await h.wait_for(gid, GatewayState.DELETED)

        histories = await every_history(h, gid)
        # The entity, the deletion, and every run of the runtime domain: at least one for
        # each of create, stop, start and delete.
        ids = [workflow_id for workflow_id, _ in histories]
        assert set(ids) == {
            naming.gateway_workflow_id(h.settings.installation, gid),
            naming.deletion_workflow_id(h.settings.installation, gid),
            naming.domain_workflow_id(h.settings.installation, gid),
        }
        assert ids.count(naming.domain_workflow_id(h.settings.installation, gid)) >= 4
        for workflow_id, history in histories:
            texts = await history_texts(h.client, history)
            if workflow_id == naming.gateway_workflow_id(h.settings.installation, gid):
                # Decoded: the runtime database's name is only in activity results.
                assert any(naming.runtime_database(gid) in text for text in texts)
            leaking = [text for text in texts if password in text]
            assert leaking == [], f"the password is in {workflow_id}: {leaking[0][:2000]}"
    assert caplog.records and password not in caplog.text


async def every_history(h: Harness, gid: str) -> list[tuple[str, WorkflowHistory]]:
    """The gateway's entity workflow, its deletion, and every run of its runtime domain
    (the runs its parents started, by run id)."""
    parents = [
        await h.client.get_workflow_handle(wid).fetch_history()
        for wid in (
            naming.gateway_workflow_id(h.settings.installation, gid),
            naming.deletion_workflow_id(h.settings.installation, gid),
        )
    ]
    children = [
        event.child_workflow_execution_started_event_attributes.workflow_execution
        for history in parents
        for event in history.events
        if event.HasField("child_workflow_execution_started_event_attributes")
    ]
    found = [(history.workflow_id, history) for history in parents]
    for child in children:
        handle = h.client.get_workflow_handle(child.workflow_id, run_id=child.run_id)
        found.append((child.workflow_id, await handle.fetch_history()))
    return found


async def test_stop_start_restart_round_trip(stack: Settings) -> None:
    async with harness(stack) as h:
        gid = unique_id("life")
        ns = naming.namespace(gid)
        await h.create(gid)
        await h.wait_for(gid, GatewayState.RUNNING)
        cluster = h.deps.cluster("local")

        await h.request(gid, Request.STOP)
        gw = await h.wait_for(gid, GatewayState.STOPPED)
        assert gw is not None and gw.phase is GatewayPhase.STOPPED
        ran(gw, ops.STOP)
        assert cluster.get(ObjectRef(Kind.DEPLOYMENT, ns, gid)) is None
        assert cluster.get(ObjectRef(Kind.SERVICE, ns, gid)) is None
        assert cluster.get(ObjectRef(Kind.APISIX_ROUTE, ns, f"{gid}-dev")) is None
        # Certificates and TLS stay while stopped; CronJobs are suspended, not deleted.
        assert cluster.get(ObjectRef(Kind.APISIX_TLS, ns, f"{gid}-dev-tls")) is not None
        cron = cluster.get(ObjectRef(Kind.CRON_JOB, ns, f"{gid}-trigger-t1"))
        assert cron is not None and cron["spec"]["suspend"] is True
        assert h.deps.children.count("Stage", gid) == 3 and h.deps.runtime.exists(gid)

        await h.request(gid, Request.START)
        ran(await h.wait_for(gid, GatewayState.RUNNING), ops.START)
        deployment = cluster.get(ObjectRef(Kind.DEPLOYMENT, ns, gid))
        assert deployment is not None
        assert cluster.get(ObjectRef(Kind.APISIX_ROUTE, ns, f"{gid}-dev")) is not None
        cron = cluster.get(ObjectRef(Kind.CRON_JOB, ns, f"{gid}-trigger-t1"))
        assert cron is not None and cron["spec"]["suspend"] is False

        generation = deployment["metadata"]["generation"]
        uid = deployment["metadata"]["uid"]
        await h.request(gid, Request.RESTART)
        await h.wait_phase(gid, GatewayPhase.STARTING)
        gw = await h.wait_for(gid, GatewayState.RUNNING)
        rolled = cluster.get(ObjectRef(Kind.DEPLOYMENT, ns, gid))
        assert rolled is not None
        # A rolling update of the same Deployment, not stop + start.
        assert rolled["metadata"]["uid"] == uid
        assert rolled["metadata"]["generation"] > generation
        assert gw is not None and gw.state is GatewayState.RUNNING
        ran(gw, ops.RESTART)


async def test_raw_mongo_writes_converge_by_the_change_stream(stack: Settings) -> None:
    """No CLI and no sweep (it runs once at the start, then hourly): the change stream
    alone turns each raw write into a signal, and the history shows those signals."""
    async with harness(stack, sweep_interval_seconds=3600.0) as h:
        await feed_open(h)
        gid = unique_id("raw")
        raw = h.deps.db["ApiGateway"]
        raw.insert_one({"gatewayId": gid, "state": "Running", "phase": "Creating"})
        await h.wait_for(gid, GatewayState.RUNNING, timeout=30)
        raw.update_one({"gatewayId": gid}, {"$set": {"state": "Stopped"}})
        await h.wait_for(gid, GatewayState.STOPPED, timeout=30)
        raw.update_one({"gatewayId": gid}, {"$set": {"state": "Running"}})
        await h.wait_for(gid, GatewayState.RUNNING, timeout=30)
        raw.update_one({"gatewayId": gid}, {"$set": {"state": "Restarting"}})
        await h.wait_phase(gid, GatewayPhase.STARTING)
        await h.wait_for(gid, GatewayState.RUNNING, timeout=30)
        # One signal per write of `state` (the workflow's own settling Restarting ->
        # Running included): a `reconcile`, as the intent is already written (issue 17).
        got = await signals(h, gid)
        assert len(got) >= 4 and set(got) == {"reconcile"}, got


async def feed_open(h: Harness, timeout: float = 30.0) -> None:
    """Until the dispatcher's change stream is open: it saves its resume token then."""
    async with asyncio.timeout(timeout):
        while await asyncio.to_thread(h.deps.db["DispatcherState"].find_one) is None:
            await asyncio.sleep(0.05)


async def signals(h: Harness, gid: str) -> list[str]:
    """The signals `gateway/<gid>` received, in order, from its history."""
    history = await h.client.get_workflow_handle(
        naming.gateway_workflow_id(h.settings.installation, gid)
    ).fetch_history()
    return [
        event.workflow_execution_signaled_event_attributes.signal_name
        for event in history.events
        if event.HasField("workflow_execution_signaled_event_attributes")
    ]


async def test_bad_requests_are_refused_and_change_nothing(stack: Settings) -> None:
    async with harness(stack, worker=False) as h:
        with pytest.raises(GatewayflowError, match="'Not_A_Label' is not a DNS-1123 label"):
            await h.request("Not_A_Label", Request.STOP)
        with pytest.raises(GatewayflowError, match="no gateway 'no-such-gateway'"):
            await h.request("no-such-gateway", Request.STOP)
        gid = unique_id("refuse")
        h.deps.db["ApiGateway"].insert_one(
            {"gatewayId": gid, "state": "Deleted", "phase": "Deleting"}
        )
        before = h.deps.db["ApiGateway"].find_one({"gatewayId": gid})
        for what in (Request.START, Request.STOP, Request.RESTART):
            with pytest.raises(GatewayflowError, match="being deleted"):
                await h.request(gid, what)
        assert h.deps.db["ApiGateway"].find_one({"gatewayId": gid}) == before


# Where each seeded (state, phase) pair must end, written from the README's rules and not
# from the product's table: an intent short of a deletion is honoured from any phase
# before Deleting; once a deletion began, any other intent is refused and the deletion
# finishes; Restarting settles at Running. A pair seeded at rest (Running/Started,
# Stopped/Stopped) is taken at its word: making what is missing is the drift check's job.
RUNNING, STOPPED, GONE, REFUSED = "Running", "Stopped", "gone", "refused, then gone"
_BEFORE_DELETION = ("Creating", "Created", "Starting", "Started", "Stopping", "Stopped")
PAIR_OUTCOMES: dict[tuple[str, str], str] = {
    **{("Running", phase): RUNNING for phase in _BEFORE_DELETION},
    **{("Stopped", phase): STOPPED for phase in _BEFORE_DELETION},
    **{("Restarting", phase): RUNNING for phase in _BEFORE_DELETION},
    **{
        (state, phase): REFUSED
        for state in ("Running", "Stopped", "Restarting")
        for phase in ("Deleting", "Deleted")
    },
    **{("Deleted", phase): GONE for phase in (*_BEFORE_DELETION, "Deleting", "Deleted")},
}


async def test_every_state_phase_pair_converges(stack: Settings) -> None:
    """Seed all 32 (state, phase) pairs directly; each ends where PAIR_OUTCOMES says, read
    back from the document and the cluster."""
    assert len(PAIR_OUTCOMES) == 32
    async with harness(stack) as h:
        seeded: dict[str, tuple[str, str]] = {}
        for state, phase in PAIR_OUTCOMES:
            gid = unique_id(f"p{len(seeded):02d}")
            seeded[gid] = (state, phase)
            h.deps.db["ApiGateway"].insert_one(
                {"gatewayId": gid, "state": state, "phase": phase, "functions": 1, "triggers": 1}
            )
        results = await asyncio.gather(*(_settled(h, gid, *pair) for gid, pair in seeded.items()))
        wrong = [
            f"{pair} {gid}: {why}"
            for (gid, pair), why in zip(seeded.items(), results, strict=True)
            if why
        ]
        assert not wrong, "\n".join(wrong)


async def _settled(h: Harness, gid: str, state: str, phase: str) -> str:
    """Empty when the gateway ended as PAIR_OUTCOMES says, else what was seen instead."""
    outcome = PAIR_OUTCOMES[(state, phase)]
    at_rest = (state, phase) in (("Running", "Started"), ("Stopped", "Stopped"))
    want = {RUNNING: GatewayState.RUNNING, STOPPED: GatewayState.STOPPED}.get(
        outcome, GatewayState.DELETED
    )
    try:
        await h.wait_for(gid, want, timeout=150)
    except AssertionError as exc:
        return str(exc)
    objects = await asyncio.to_thread(kube_owned, h.settings, gid)
    deployments = {name for kind, _ns, name in objects if kind == "Deployment"}
    if outcome == RUNNING and not at_rest and deployments != {gid}:
        return f"Running without its Deployment: {sorted(objects)}"
    if outcome == STOPPED and deployments:
        return f"Stopped with a Deployment: {sorted(deployments)}"
    if outcome in (GONE, REFUSED) and (left := await h.traces(gid)):
        return f"left behind {left}"
    if outcome == REFUSED:
        history = await h.client.get_workflow_handle(
            naming.gateway_workflow_id(h.settings.installation, gid)
        ).fetch_history()
        if not any("refused" in text for text in await history_texts(h.client, history)):
            return "deleted without recording the refusal"
    return ""

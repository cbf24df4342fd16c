"""Gateway lifecycle end to end: real Temporal, real MongoDB-wire server, the emulator."""

import asyncio
import json

import pytest

from activities.provision import trigger_docs
from gatewayflow.cluster.kinds import Kind, ObjectRef
from gatewayflow.domain import naming
from gatewayflow.domain.documents import COLLECTIONS, ApiGateway
from gatewayflow.domain.states import DomainPhase, GatewayPhase, GatewayState
from gatewayflow.domain.transitions import Request, RequestRefused
from gatewayflow.settings import Settings
from tests.gateway_harness import Harness, harness, unique_id
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
    cluster = h.deps.cluster("local")
    found = set()
    for kind in Kind:
        for obj in cluster.list_owned(gid, kind):
            ref = ObjectRef.of(obj)
            found.add((kind.value, ref.namespace, ref.name))
    return found


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
        # The password lives in the Secret only: never in a workflow payload.
        secret = h.deps.cluster("local").get(
            ObjectRef(Kind.SECRET, naming.namespace(gid), naming.db_secret(gid))
        )
        assert secret is not None
        from activities.provision import _secret_password

        password = _secret_password(secret)
        for wid in (naming.gateway_workflow_id(gid), naming.domain_workflow_id(gid)):
            history = await h.client.get_workflow_handle(wid).fetch_history()
            assert password not in json.dumps(history.to_json_dict())
        assert password not in json.dumps(gw.model_dump(mode="json"))


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


async def test_raw_mongo_writes_converge(stack: Settings) -> None:
    """No CLI involved: the dispatcher's change stream sees the write."""
    async with harness(stack) as h:
        gid = unique_id("raw")
        raw = h.deps.db["ApiGateway"]
        raw.insert_one({"gatewayId": gid, "state": "Running", "phase": "Creating"})
        await h.wait_for(gid, GatewayState.RUNNING)
        raw.update_one({"gatewayId": gid}, {"$set": {"state": "Stopped"}})
        await h.wait_for(gid, GatewayState.STOPPED)
        raw.update_one({"gatewayId": gid}, {"$set": {"state": "Running"}})
        await h.wait_for(gid, GatewayState.RUNNING)
        raw.update_one({"gatewayId": gid}, {"$set": {"state": "Restarting"}})
        await h.wait_phase(gid, GatewayPhase.STARTING)
        await h.wait_for(gid, GatewayState.RUNNING)


async def test_bad_requests_are_refused_and_change_nothing(stack: Settings) -> None:
    async with harness(stack, worker=False) as h:
        from gatewayflow.domain.naming import InvalidGatewayId
        from gatewayflow.store.errors import UnknownGateway

        with pytest.raises(InvalidGatewayId):
            await h.request("Not_A_Label", Request.STOP)
        with pytest.raises(UnknownGateway):
            await h.request("no-such-gateway", Request.STOP)
        gid = unique_id("refuse")
        h.deps.db["ApiGateway"].insert_one(
            {"gatewayId": gid, "state": "Deleted", "phase": "Deleting"}
        )
        before = h.deps.db["ApiGateway"].find_one({"gatewayId": gid})
        for what in (Request.START, Request.STOP, Request.RESTART):
            with pytest.raises(RequestRefused, match="being deleted"):
                await h.request(gid, what)
        assert h.deps.db["ApiGateway"].find_one({"gatewayId": gid}) == before


async def test_every_state_phase_pair_converges(stack: Settings) -> None:
    """Seed all 32 (state, phase) pairs directly; none is left stuck."""
    async with harness(stack) as h:
        seeded: dict[str, tuple[GatewayState, GatewayPhase]] = {}
        for state in GatewayState:
            for phase in GatewayPhase:
                gid = unique_id(f"p{len(seeded):02d}")
                seeded[gid] = (state, phase)
                h.deps.db["ApiGateway"].insert_one(
                    {
                        "gatewayId": gid,
                        "state": state.value,
                        "phase": phase.value,
                        "functions": 1,
                        "triggers": 1,
                    }
                )
        assert len(seeded) == 32

        results = await asyncio.gather(
            *(_settled(h, gid, state, phase) for gid, (state, phase) in seeded.items())
        )
        stuck = [r for r in results if r]
        assert not stuck, "\n".join(stuck)


async def _settled(h: Harness, gid: str, state: GatewayState, phase: GatewayPhase) -> str:
    """Empty when the pair converged to its intent, or to Deleted after a recorded refusal."""
    from gatewayflow.domain.transitions import decide

    decision = decide(state, phase)
    if decision.refusal:
        want = GatewayState.DELETED
    elif state is GatewayState.RESTARTING:
        want = GatewayState.RUNNING  # a restart settles back to Running
    else:
        want = state
    try:
        gw = await h.wait_for(gid, want, timeout=150)
    except (AssertionError, TimeoutError) as exc:
        return f"({state.value}, {phase.value}) {gid}: {exc}"
    if want is GatewayState.DELETED:
        assert gw is None
        left = await h.leftovers(gid)
        if left:
            return f"({state.value}, {phase.value}) {gid}: left behind {left}"
    return ""

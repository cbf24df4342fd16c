"""Creation steps: namespace, runtime database, stages, functions, triggers."""

import base64
import secrets

from temporalio import activity

from activities.errors import translated
from activities.recording import recorded
from gatewayflow.cluster import manifests
from gatewayflow.cluster.kinds import Kind, ObjectRef
from gatewayflow.deps import Deps
from gatewayflow.domain import naming
from gatewayflow.domain.documents import (
    ClientApp,
    CloudFunction,
    CronTrigger,
    Database,
    Environment,
    Stage,
)
from gatewayflow.domain.messages import StepInput, StepResult
from gatewayflow.domain.states import DatabasePhase


def function_names(count: int) -> list[str]:
    return [f"fn-{n}" for n in range(1, count + 1)]


def trigger_docs(gateway_id: str, triggers: int, functions: int) -> list[CronTrigger]:
    names = function_names(max(functions, 1))
    return [
        CronTrigger(
            gateway_id=gateway_id, trigger_id=f"t{n}", function_name=names[(n - 1) % len(names)]
        )
        for n in range(1, triggers + 1)
    ]


class ProvisionActivities:
    def __init__(self, deps: Deps) -> None:
        self.deps = deps

    @activity.defn
    @translated
    @recorded
    def create_namespace(self, step: StepInput) -> StepResult:
        gid = step.gateway_id
        cluster = self.deps.cluster(step.region)
        made = [
            cluster.ensure(gid, manifests.namespace(gid)),
            # Before anything else in it: the worker's rights in this namespace.
            cluster.ensure(gid, manifests.role_binding(gid, self.deps.settings.service_account)),
            cluster.ensure(gid, manifests.config_map(gid, step.region)),
        ]
        return StepResult(step=step.step, created=[str(ObjectRef.of(obj)) for obj in made])

    @activity.defn
    @translated
    @recorded
    def create_database(self, step: StepInput) -> StepResult:
        """The password is made here and lives only in the Secret and the runtime server."""
        gid = step.gateway_id
        cluster = self.deps.cluster(step.region)
        ns = naming.namespace(gid)
        secret = cluster.get(ObjectRef(Kind.SECRET, ns, naming.db_secret(gid)))
        if secret is None:
            password = secrets.token_urlsafe(24)
            secret = cluster.ensure(
                gid, manifests.db_secret(gid, naming.runtime_user(gid), password)
            )
        password = _secret_password(secret)
        self.deps.runtime.create(gid, password)
        self.deps.databases.upsert(
            Database(
                gateway_id=gid,
                name=naming.runtime_database(gid),
                user=naming.runtime_user(gid),
                secret_name=naming.db_secret(gid),
                phase=DatabasePhase.CREATED,
            )
        )
        return StepResult(step=step.step, created=[naming.runtime_database(gid)])

    @activity.defn
    @translated
    @recorded
    def create_stages(self, step: StepInput) -> StepResult:
        gid = step.gateway_id
        gw = self.deps.gateways.require(gid)
        cluster = self.deps.cluster(step.region)
        children = self.deps.children
        for env in naming.ENVIRONMENTS:
            children.insert_many(
                [
                    Stage(gateway_id=gid, name=env),
                    Environment(gateway_id=gid, name=env),
                    ClientApp(
                        gateway_id=gid,
                        environment=env,
                        name=f"{env}-app",
                        client_id=f"{gid}-{env}-app",
                    ),
                ]
            )
            host = naming.host(gid, env, gw.placed_region)
            cluster.ensure(gid, manifests.stage_route(gid, env, host))
        return StepResult(
            step=step.step, created=[naming.stage_route(gid, env) for env in naming.ENVIRONMENTS]
        )

    @activity.defn
    @translated
    @recorded
    def create_functions(self, step: StepInput) -> StepResult:
        gid = step.gateway_id
        gw = self.deps.gateways.require(gid)
        self.deps.children.insert_many(
            [CloudFunction(gateway_id=gid, name=name) for name in function_names(gw.functions)]
        )
        return StepResult(step=step.step, created=function_names(gw.functions))

    @activity.defn
    @translated
    @recorded
    def create_triggers(self, step: StepInput) -> StepResult:
        """CronJobs are created suspended: start resumes them once the pods run."""
        gid = step.gateway_id
        gw = self.deps.gateways.require(gid)
        cluster = self.deps.cluster(step.region)
        created = []
        triggers = trigger_docs(gid, gw.triggers, gw.functions)
        self.deps.children.insert_many(triggers)
        for trigger in triggers:
            cluster.ensure(gid, manifests.cron_job(gid, trigger, suspend=True))
            created.append(naming.cron_job(gid, trigger.trigger_id))
        return StepResult(step=step.step, created=created)


def _secret_password(secret: dict[str, object]) -> str:
    string_data = secret.get("stringData")
    if isinstance(string_data, dict) and "password" in string_data:
        return str(string_data["password"])
    data = secret.get("data")
    if isinstance(data, dict) and "password" in data:
        return base64.b64decode(str(data["password"])).decode()
    raise ValueError("the database Secret holds no password")

"""Creation steps: namespace, runtime database, stages, functions, triggers."""

import base64
import secrets
from typing import Any

from activities.base import Activities, step_activity
from gatewayflow.cluster.kinds import Kind, ObjectRef
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
from gatewayflow.ownership import Owner


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


class ProvisionActivities(Activities):
    @step_activity
    def create_namespace(self, step: StepInput) -> StepResult:
        gid = step.gateway_id
        cluster = self.deps.cluster(step.region)
        owner = Owner(
            gid,
            installation=self.deps.settings.installation,
            region=step.region,
            service_account=self.deps.settings.service_account,
        )
        made = [cluster.ensure(gid, obj) for obj in self.deps.ownership.base.manifests(owner)]
        return StepResult(step=step.step, created=[str(ObjectRef.of(obj)) for obj in made])

    @step_activity
    def create_database(self, step: StepInput) -> StepResult:
        """The password is made here and lives only in the Secret and the runtime server;
        a Secret that exists keeps its own."""
        gid = step.gateway_id
        cluster = self.deps.cluster(step.region)
        part = self.deps.ownership.database
        owner = Owner(
            gid,
            installation=self.deps.settings.installation,
            region=step.region,
            password=secrets.token_urlsafe(24),
        )
        secret: dict[str, Any] | None = None
        for ref, manifest in zip(part.made(owner), part.manifests(owner), strict=True):
            live = cluster.get(ref) or cluster.ensure(gid, manifest)
            if ref.kind == Kind.SECRET:
                secret = live
        assert secret is not None, "the database part holds the Secret of its password"
        self.deps.runtime.create(gid, _secret_password(secret))
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

    @step_activity
    def create_stages(self, step: StepInput) -> StepResult:
        gid = step.gateway_id
        gw = self.deps.gateways.require(gid)
        cluster = self.deps.cluster(step.region)
        part = self.deps.ownership.stages
        self.deps.children.insert_many(
            [
                doc
                for env in naming.ENVIRONMENTS
                for doc in (
                    Stage(gateway_id=gid, name=env),
                    Environment(gateway_id=gid, name=env),
                    ClientApp(
                        gateway_id=gid,
                        environment=env,
                        name=f"{env}-app",
                        client_id=f"{gid}-{env}-app",
                    ),
                )
            ]
        )
        created = []
        owner = Owner(gid, installation=self.deps.settings.installation, region=gw.placed_region)
        for obj in part.manifests(owner):
            cluster.ensure(gid, obj)
            created.append(ObjectRef.of(obj).name)
        return StepResult(step=step.step, created=created)

    @step_activity
    def create_functions(self, step: StepInput) -> StepResult:
        gid = step.gateway_id
        gw = self.deps.gateways.require(gid)
        self.deps.children.insert_many(
            [CloudFunction(gateway_id=gid, name=name) for name in function_names(gw.functions)]
        )
        return StepResult(step=step.step, created=function_names(gw.functions))

    @step_activity
    def create_triggers(self, step: StepInput) -> StepResult:
        """CronJobs are made suspended: start resumes them once the pods run."""
        gid = step.gateway_id
        gw = self.deps.gateways.require(gid)
        cluster = self.deps.cluster(step.region)
        triggers = trigger_docs(gid, gw.triggers, gw.functions)
        self.deps.children.insert_many(triggers)
        created = []
        owner = Owner(
            gid,
            installation=self.deps.settings.installation,
            region=step.region,
            triggers=triggers,
            suspended=True,
        )
        for obj in self.deps.ownership.triggers.manifests(owner):
            cluster.ensure(gid, obj)
            created.append(ObjectRef.of(obj).name)
        return StepResult(step=step.step, created=created)


def _secret_password(secret: dict[str, object]) -> str:
    string_data = secret.get("stringData")
    if isinstance(string_data, dict) and "password" in string_data:
        return str(string_data["password"])
    data = secret.get("data")
    if isinstance(data, dict) and "password" in data:
        return base64.b64decode(str(data["password"])).decode()
    raise ValueError("the database Secret holds no password")

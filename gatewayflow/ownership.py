"""What a gateway owns, part by part of its lifecycle: the only list (docs/inventory.md).

Each part names its Kubernetes objects (kind, name, and the builder of
gatewayflow/cluster/manifests.py that makes each), its MongoDB documents and, for the
database, the runtime database and its user. The steps that make and remove a part, the
drift check, `plan`, `audit` and the reaper all read this declaration (through
`Deps.ownership`), so an object added here is made, removed, checked and listed by all
of them.

What a phase implies is declared here too: a started gateway has everything; a stopped
one keeps its base but neither its instance nor its domain routes, and its CronJobs are
suspended.
"""

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from gatewayflow.cluster import manifests
from gatewayflow.cluster.expected import Expected
from gatewayflow.cluster.kinds import Kind, ObjectRef
from gatewayflow.domain import naming
from gatewayflow.domain.documents import CronTrigger, InstanceSpec
from gatewayflow.domain.states import GatewayPhase

Manifest = dict[str, Any]


@dataclass(frozen=True)
class Owner:
    """The gateway, as far as the names and manifests of what it owns depend on it. Each
    step fills in what it knows; names depend on the id, an environment or a trigger only."""

    gateway_id: str
    installation: str = ""  # labels every object; names do not depend on it
    region: str = ""  # where its resources are: the runtime hosts name it
    custom_domain: str | None = None
    hosts: Mapping[str, str] = field(default_factory=dict)  # env -> host, as recorded
    instance: InstanceSpec = field(default_factory=InstanceSpec)
    restarted_at: str | None = None  # a new value rolls the Deployment
    triggers: Sequence[CronTrigger] = ()
    suspended: bool = True  # the CronJobs'
    service_account: str = ""  # the worker's, `<namespace>/<name>`
    password: str = field(default="", repr=False)  # the runtime database's, for its Secret

    def host(self, env: str) -> str:
        return self.hosts.get(env) or naming.host(self.gateway_id, env, self.region)

    def trigger(self, trigger_id: str) -> CronTrigger:
        return next(t for t in self.triggers if t.trigger_id == trigger_id)


Keys = Callable[[Owner], Sequence[str]]


def one(_owner: Owner) -> Sequence[str]:
    return ("",)


def per_environment(_owner: Owner) -> Sequence[str]:
    return naming.ENVIRONMENTS


def per_trigger(owner: Owner) -> Sequence[str]:
    return [t.trigger_id for t in owner.triggers]


def always(_owner: Owner) -> bool:
    return True


def with_custom_domain(owner: Owner) -> bool:
    return bool(owner.custom_domain)


class WhenStopped(Enum):
    """What a stopped gateway has of an object."""

    KEPT = "kept"
    GONE = "gone"
    SUSPENDED = "suspended"  # kept with `spec.suspend` true; false while started


@dataclass(frozen=True)
class Owned:
    """Objects of one kind: one, or one per key (environment, trigger)."""

    kind: Kind
    name: Callable[[str, str], str]  # (gateway id, key) -> name
    build: Callable[[Owner, str], Manifest]  # (owner, key) -> manifest
    keys: Keys = one
    when: Callable[[Owner], bool] = always  # made only then; removed whenever present
    when_stopped: WhenStopped = WhenStopped.KEPT
    spec_checked: bool = False  # the drift check compares the live spec with the built one
    by_label: bool = False  # removed by label too: the documents naming them may be gone
    with_namespace: bool = False  # never removed alone: the namespace takes it along

    def ref(self, gateway_id: str, key: str) -> ObjectRef:
        namespace = naming.namespace(gateway_id) if self.kind.namespaced else None
        return ObjectRef(self.kind, namespace, self.name(gateway_id, key))

    def refs(self, owner: Owner) -> list[ObjectRef]:
        return [self.ref(owner.gateway_id, key) for key in self.keys(owner)]

    def manifests(self, owner: Owner) -> list[Manifest]:
        if not self.when(owner):
            return []
        built = []
        for key in self.keys(owner):
            manifest = self.build(owner, key)
            declared = self.ref(owner.gateway_id, key)
            if ObjectRef.of(manifest) != declared:
                raise ValueError(f"the builder of {declared} made {ObjectRef.of(manifest)}")
            built.append(manifest)
        return built


@dataclass(frozen=True)
class Part:
    """What one part of a gateway's lifecycle has, made and removed by its own steps."""

    name: str
    objects: tuple[Owned, ...] = ()  # in the order they are made
    removal: tuple[Owned, ...] = ()  # the order they are removed, where not that of `objects`
    documents: tuple[str, ...] = ()  # MongoDB collections, in the order they are emptied
    runtime_database: bool = False  # the gateway's database and user on the runtime MongoDB

    def __post_init__(self) -> None:
        if self.removal and sorted(map(id, self.removal)) != sorted(map(id, self.objects)):
            raise ValueError(f"the removal order of {self.name} must name each of its objects")

    def manifests(self, owner: Owner) -> list[Manifest]:
        """Everything the part makes, in order."""
        return [m for owned in self.objects for m in owned.manifests(owner)]

    def made(self, owner: Owner) -> list[ObjectRef]:
        """What the part has once made: its objects in order, conditional ones if due."""
        return [ref for owned in self.objects if owned.when(owner) for ref in owned.refs(owner)]

    def removed(
        self, owner: Owner, only: Callable[[Owned], bool] = lambda _owned: True
    ) -> list[ObjectRef]:
        """What its step removes, in order, the Namespace last: conditional objects too
        (present or not); not what the namespace takes along."""
        refs = [
            ref
            for owned in self.removal or self.objects
            if only(owned) and not owned.with_namespace
            for ref in owned.refs(owner)
        ]
        return sorted(refs, key=lambda ref: not ref.kind.namespaced)

    def labelled(self, gateway_id: str) -> list[tuple[Kind, str | None]]:
        """Collections whose every object with the gateway's label goes too."""
        return [
            (owned.kind, naming.namespace(gateway_id) if owned.kind.namespaced else None)
            for owned in self.objects
            if owned.by_label
        ]


@dataclass(frozen=True)
class Ownership:
    """A gateway's parts, in the order a start makes them."""

    base: Part
    database: Part
    domain: Part
    stages: Part
    functions: Part
    triggers: Part
    instance: Part

    @property
    def parts(self) -> tuple[Part, ...]:
        return (
            self.base,
            self.database,
            self.domain,
            self.stages,
            self.functions,
            self.triggers,
            self.instance,
        )

    def kinds(self) -> list[Kind]:
        """Every kind a gateway owns, each once."""
        return list(dict.fromkeys(o.kind for part in self.parts for o in part.objects))

    def kinds_with_body(self) -> list[Kind]:
        """The kinds whose body the drift check compares (a spec, `spec.suspend`); of
        every other kind it needs only to know which objects exist."""
        return list(
            dict.fromkeys(
                o.kind
                for part in self.parts
                for o in part.objects
                if o.spec_checked or o.when_stopped is WhenStopped.SUSPENDED
            )
        )

    def expected(self, phase: GatewayPhase, owner: Owner) -> Expected:
        """What a converged phase implies in the cluster; nothing while an operation runs."""
        objects = [o for part in self.parts for o in part.objects]
        suspending = [o for o in objects if o.when_stopped is WhenStopped.SUSPENDED]
        if phase is GatewayPhase.STARTED:
            return Expected(
                present=[ref for part in self.parts for ref in part.made(owner)],
                specs={
                    o.ref(owner.gateway_id, key): o.build(owner, key)["spec"]
                    for o in objects
                    if o.spec_checked and o.when(owner)
                    for key in o.keys(owner)
                },
                suspended={ref: False for o in suspending for ref in o.refs(owner)},
            )
        if phase is GatewayPhase.STOPPED:
            return Expected(
                absent=[
                    ref
                    for o in objects
                    if o.when_stopped is WhenStopped.GONE
                    for ref in o.refs(owner)
                ],
                suspended={ref: True for o in suspending for ref in o.refs(owner)},
            )
        return Expected()


def _named(name: Callable[[str], str]) -> Callable[[str, str], str]:
    """The name of an object a gateway has one of."""
    return lambda gateway_id, _key: name(gateway_id)


def _custom_domain(owner: Owner) -> str:
    assert owner.custom_domain, "made only with a custom domain"
    return owner.custom_domain


# -- the base: made first, removed last ------------------------------------------------------
NAMESPACE = Owned(
    Kind.NAMESPACE,
    _named(naming.namespace),
    lambda o, _: manifests.namespace(o.installation, o.gateway_id),
)
ROLE_BINDING = Owned(
    Kind.ROLE_BINDING,
    lambda _gid, _key: manifests.GATEWAY_ROLE,
    lambda o, _: manifests.role_binding(o.installation, o.gateway_id, o.service_account),
    # Removing it would take the worker's rights to remove the rest.
    with_namespace=True,
)
CONFIG_MAP = Owned(
    Kind.CONFIG_MAP,
    _named(naming.config_map),
    lambda o, _: manifests.config_map(o.installation, o.gateway_id, o.region),
)

# -- the database: its password lives only in the Secret and the runtime server ---------------
DB_SECRET = Owned(
    Kind.SECRET,
    _named(naming.db_secret),
    lambda o, _: manifests.db_secret(
        o.installation, o.gateway_id, naming.runtime_user(o.gateway_id), o.password
    ),
)

# -- the runtime domain: routes are made last and removed first (traffic) ---------------------
PLUGIN_CONFIG = Owned(
    Kind.APISIX_PLUGIN_CONFIG,
    _named(naming.plugin_config),
    lambda o, _: manifests.plugin_config(o.installation, o.gateway_id),
)
TLS = Owned(
    Kind.APISIX_TLS,
    naming.tls,
    lambda o, env: manifests.tls(o.installation, o.gateway_id, env, o.host(env)),
    keys=per_environment,
)
CERTIFICATE = Owned(
    Kind.CERTIFICATE,
    _named(naming.certificate),
    lambda o, _: manifests.certificate(o.installation, o.gateway_id, _custom_domain(o)),
    when=with_custom_domain,
)
CUSTOM_TLS = Owned(
    Kind.APISIX_TLS,
    _named(naming.custom_tls),
    lambda o, _: manifests.custom_tls(o.installation, o.gateway_id, _custom_domain(o)),
    when=with_custom_domain,
)
DOMAIN_ROUTE = Owned(
    Kind.APISIX_ROUTE,
    naming.domain_route,
    lambda o, env: manifests.domain_route(
        o.installation, o.gateway_id, env, o.host(env), naming.plugin_config(o.gateway_id)
    ),
    keys=per_environment,
    when_stopped=WhenStopped.GONE,
)

# -- stages, triggers, the instance -----------------------------------------------------------
STAGE_ROUTE = Owned(
    Kind.APISIX_ROUTE,
    naming.stage_route,
    lambda o, env: manifests.stage_route(o.installation, o.gateway_id, env, o.host(env)),
    keys=per_environment,
)
CRON_JOB = Owned(
    Kind.CRON_JOB,
    naming.cron_job,
    lambda o, trigger_id: manifests.cron_job(
        o.installation, o.gateway_id, o.trigger(trigger_id), suspend=o.suspended
    ),
    keys=per_trigger,
    when_stopped=WhenStopped.SUSPENDED,
    by_label=True,
)
DEPLOYMENT = Owned(
    Kind.DEPLOYMENT,
    _named(naming.deployment),
    lambda o, _: manifests.deployment(o.installation, o.gateway_id, o.instance, o.restarted_at),
    when_stopped=WhenStopped.GONE,
    spec_checked=True,
)
SERVICE = Owned(
    Kind.SERVICE,
    _named(naming.service),
    lambda o, _: manifests.service(o.installation, o.gateway_id),
    when_stopped=WhenStopped.GONE,
)

OWNERSHIP = Ownership(
    # The RoleBinding right after the Namespace: it grants the worker the rest.
    base=Part("base", objects=(NAMESPACE, ROLE_BINDING, CONFIG_MAP)),
    database=Part("database", objects=(DB_SECRET,), documents=("Database",), runtime_database=True),
    domain=Part(
        "domain",
        objects=(PLUGIN_CONFIG, TLS, CERTIFICATE, CUSTOM_TLS, DOMAIN_ROUTE),
        removal=(DOMAIN_ROUTE, PLUGIN_CONFIG, TLS, CUSTOM_TLS, CERTIFICATE),
        documents=("RuntimeDomain",),
    ),
    # A ClientApp names its environment: the ClientApps go first.
    stages=Part("stages", objects=(STAGE_ROUTE,), documents=("ClientApp", "Environment", "Stage")),
    functions=Part("functions", documents=("CloudFunction",)),
    triggers=Part("triggers", objects=(CRON_JOB,), documents=("CronTrigger",)),
    instance=Part("instance", objects=(DEPLOYMENT, SERVICE)),
)

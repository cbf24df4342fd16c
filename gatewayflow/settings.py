"""One settings model for every process, read from the environment.

Unset addresses fall back to the embedded stack recorded in GATEWAYFLOW_HOME/stack.json,
so every `gatewayflow` command finds a stack started by `gatewayflow up`.

The Temporal connection (address, namespace, TLS, API key) is read as the `temporal` CLI
reads it, through `temporalio.envconfig`: a profile of temporal.toml
(`TEMPORAL_CONFIG_FILE`, `TEMPORAL_PROFILE`) overridden by the standard `TEMPORAL_*`
variables. A TLS client certificate without its key (or the reverse) stops start-up.
"""

import json
import os
from collections.abc import Mapping
from pathlib import Path

from pydantic import AliasChoices, Field, PrivateAttr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict
from temporalio.envconfig import ClientConfigProfile

from gatewayflow.domain import naming
from gatewayflow.domain.errors import PermanentError

STACK_FILE = "stack.json"

# The standard variables `temporalio.envconfig` reads (as the `temporal` CLI does), beside
# TEMPORAL_ADDRESS and TEMPORAL_NAMESPACE, which the model below also reads.
TEMPORAL_ENV_VARS = frozenset(
    {
        "TEMPORAL_CONFIG_FILE",
        "TEMPORAL_PROFILE",
        "TEMPORAL_API_KEY",
        "TEMPORAL_TLS",
        "TEMPORAL_TLS_CLIENT_CERT_PATH",
        "TEMPORAL_TLS_CLIENT_CERT_DATA",
        "TEMPORAL_TLS_CLIENT_KEY_PATH",
        "TEMPORAL_TLS_CLIENT_KEY_DATA",
        "TEMPORAL_TLS_SERVER_CA_CERT_PATH",
        "TEMPORAL_TLS_SERVER_CA_CERT_DATA",
        "TEMPORAL_TLS_SERVER_NAME",
        "TEMPORAL_TLS_DISABLE_HOST_VERIFICATION",
        "TEMPORAL_GRPC_META",
    }
)


# The setting of each server's address, and the variable that sets it.
ENV_OF = {
    "temporal_address": "TEMPORAL_ADDRESS",
    "mongodb_uri": "MONGODB_URI",
    "kubeconfig": "KUBECONFIG",
}


def _env(*names: str) -> AliasChoices:
    return AliasChoices(*names)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", case_sensitive=True)

    home: Path = Field(default=Path(".gatewayflow"), validation_alias=_env("GATEWAYFLOW_HOME"))
    temporal_address: str | None = Field(default=None, validation_alias=_env("TEMPORAL_ADDRESS"))
    temporal_namespace: str = Field(default="default", validation_alias=_env("TEMPORAL_NAMESPACE"))
    temporal_ui_url: str | None = Field(default=None, validation_alias=_env("TEMPORAL_UI_URL"))
    mongodb_uri: str | None = Field(default=None, validation_alias=_env("MONGODB_URI"))
    runtime_mongodb_uri: str | None = Field(
        default=None, validation_alias=_env("GATEWAYFLOW_RUNTIME_MONGODB_URI")
    )
    db_name: str = Field(default="gatewayflow", validation_alias=_env("GATEWAYFLOW_DB"))
    installation_name: str | None = Field(
        default=None,
        max_length=naming.MAX_INSTALLATION_LENGTH,
        pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$",
        validation_alias=_env("GATEWAYFLOW_INSTALLATION"),
        description="the installation every object, database and workflow is labelled "
        "with; unset: derived from GATEWAYFLOW_DB",
    )
    kubeconfig: Path | None = Field(default=None, validation_alias=_env("KUBECONFIG"))
    regions: dict[str, str] = Field(
        default_factory=dict,
        validation_alias=_env("GATEWAYFLOW_REGIONS"),
        description="region -> kubeconfig context; empty means context named like the region",
    )
    service_account: str = Field(
        default="gatewayflow-system/gatewayflow-worker",
        pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?/[a-z0-9]([-.a-z0-9]*[a-z0-9])?$",
        validation_alias=_env("GATEWAYFLOW_SERVICE_ACCOUNT"),
        description="<namespace>/<name> of the worker's ServiceAccount, bound in each "
        "gateway namespace (deploy/worker.yaml)",
    )
    task_queue: str = Field(default="gatewayflow", validation_alias=_env("GATEWAYFLOW_TASK_QUEUE"))
    max_concurrent_activities: int = Field(
        default=50, ge=1, validation_alias=_env("GATEWAYFLOW_MAX_CONCURRENT_ACTIVITIES")
    )
    max_concurrent_workflow_tasks: int = Field(
        default=50, ge=1, validation_alias=_env("GATEWAYFLOW_MAX_CONCURRENT_WORKFLOW_TASKS")
    )
    start_timeout_seconds: float = Field(
        default=900.0, gt=0, validation_alias=_env("GATEWAYFLOW_START_TIMEOUT")
    )
    sweep_interval_seconds: float = Field(
        default=30.0, gt=0, validation_alias=_env("GATEWAYFLOW_SWEEP_INTERVAL")
    )
    drift_interval_seconds: float = Field(
        default=60.0,
        ge=0,
        validation_alias=_env("GATEWAYFLOW_DRIFT_INTERVAL"),
        description="seconds between drift checks of converged gateways; 0 turns them off",
    )
    drift_max_repairs: int = Field(
        default=25,
        ge=1,
        validation_alias=_env("GATEWAYFLOW_DRIFT_MAX_REPAIRS"),
        description="drifted gateways repaired per drift check; the rest wait for later rounds",
    )
    reap_grace_seconds: float = Field(
        default=3600.0,
        ge=0,
        validation_alias=_env("GATEWAYFLOW_REAP_GRACE"),
        description="an orphan is reaped only once it has been seen for this long",
    )
    reap_interval_seconds: float = Field(
        default=300.0,
        ge=0,
        validation_alias=_env("GATEWAYFLOW_REAP_INTERVAL"),
        description="seconds between scheduled orphan reaper runs; 0 turns the schedule off",
    )
    reap_max: int = Field(
        default=5,
        ge=1,
        validation_alias=_env("GATEWAYFLOW_REAP_MAX"),
        description="a reaper run that would adopt more orphans than this in one region "
        "adopts none (held) until an operator confirms it",
    )
    reap_max_share: float = Field(
        default=0.1,
        gt=0,
        le=1,
        validation_alias=_env("GATEWAYFLOW_REAP_MAX_SHARE"),
        description="likewise for more than this share of a region's gateways (documents "
        "and labelled namespaces); one orphan per region is always within it",
    )
    region_deletion_limit: int = Field(
        default=20,
        ge=1,
        validation_alias=_env("GATEWAYFLOW_REGION_DELETION_LIMIT"),
        description="deletions running at once per region, across every worker",
    )
    runtime_images: str = Field(
        default="gatewayflow/runtime",
        validation_alias=_env("GATEWAYFLOW_RUNTIME_IMAGES"),
        description="comma-separated images a gateway's runtime may run: a repository "
        "(any tag or digest of it) or a prefix ending in '/' (every image under it)",
    )
    deletion_guard_count: int = Field(
        default=10,
        ge=0,
        validation_alias=_env("GATEWAYFLOW_DELETION_GUARD_COUNT"),
        description="deletions a region admits within the window before the guard may "
        "hold more (it holds only past both this count and the share)",
    )
    deletion_guard_share: float = Field(
        default=0.25,
        ge=0,
        le=1,
        validation_alias=_env("GATEWAYFLOW_DELETION_GUARD_SHARE"),
        description="share of a region's gateways deleted within the window past which "
        "the guard may hold more (it holds only past both this share and the count)",
    )
    deletion_guard_window_seconds: float = Field(
        default=600.0,
        gt=0,
        validation_alias=_env("GATEWAYFLOW_DELETION_GUARD_WINDOW"),
        description="seconds over which the deletion guard counts a region's deletions",
    )
    metrics_port: int | None = Field(
        default=None, validation_alias=_env("GATEWAYFLOW_METRICS_PORT")
    )
    metrics_address: str = Field(
        default="127.0.0.1",
        validation_alias=_env("GATEWAYFLOW_METRICS_ADDRESS"),
        description="the address /metrics listens on; 0.0.0.0 where a scraper must reach it",
    )
    dispatcher: bool = Field(default=True, validation_alias=_env("GATEWAYFLOW_DISPATCHER"))
    change_streams: bool = Field(
        default=True,
        validation_alias=_env("GATEWAYFLOW_CHANGE_STREAMS"),
        description="off: the periodic sweep alone finds changes of intent",
    )

    # Ports of the embedded default.
    temporal_port: int = Field(default=7233, validation_alias=_env("GATEWAYFLOW_TEMPORAL_PORT"))
    ui_port: int = Field(default=8233, validation_alias=_env("GATEWAYFLOW_UI_PORT"))
    mongo_port: int = Field(default=27017, validation_alias=_env("GATEWAYFLOW_MONGO_PORT"))
    kube_port: int = Field(default=8001, validation_alias=_env("GATEWAYFLOW_KUBE_PORT"))

    # The variables whose value `resolved()` filled in from the embedded stack's defaults.
    _embedded: frozenset[str] = PrivateAttr(default=frozenset())

    @property
    def installation(self) -> str:
        """Which installation this process is: what it owns carries this id, and it
        never touches what carries another (README, Production)."""
        return self.installation_name or naming.installation_of_database(self.db_name)

    @property
    def stack_file(self) -> Path:
        return self.home / STACK_FILE

    def recorded_stack(self) -> dict[str, str]:
        try:
            data = json.loads(self.stack_file.read_text())
        except (OSError, ValueError):
            return {}
        return {k: v for k, v in data.items() if isinstance(v, str)}

    def resolved(self, env: Mapping[str, str] | None = None) -> "Settings":
        """Fill unset addresses from the Temporal profile, then from the running embedded
        stack, then from the default ports."""
        stack = self.recorded_stack()
        update: dict[str, object] = {}
        profile = temporal_profile(env)
        if self.temporal_address is None:
            update["temporal_address"] = profile.address or stack.get(
                "temporal_address", f"127.0.0.1:{self.temporal_port}"
            )
        if "temporal_namespace" not in self.model_fields_set and profile.namespace:
            update["temporal_namespace"] = profile.namespace
        if self.temporal_ui_url is None:
            update["temporal_ui_url"] = stack.get(
                "temporal_ui_url", f"http://127.0.0.1:{self.ui_port}"
            )
        if self.mongodb_uri is None:
            update["mongodb_uri"] = stack.get(
                "mongodb_uri", f"mongodb://127.0.0.1:{self.mongo_port}/?directConnection=true"
            )
        if self.kubeconfig is None:
            update["kubeconfig"] = Path(stack.get("kubeconfig", str(self.home / "kubeconfig")))
        resolved = self.model_copy(update=update)
        from_profile = {"temporal_address"} if profile.address else set()
        resolved._embedded = self._embedded | {
            ENV_OF[name] for name in update if name in ENV_OF and name not in from_profile
        }
        return resolved

    def remedy(self, variable: str) -> str:
        """What to do when the server named by `variable` (e.g. MONGODB_URI) does not answer."""
        if variable in self._embedded:
            return f"start the embedded stack with `gatewayflow up`, or set {variable}"
        return f"check {variable} (it points there)"

    @property
    def allowed_runtime_images(self) -> list[str]:
        return [entry.strip() for entry in self.runtime_images.split(",") if entry.strip()]

    def context_for(self, region: str) -> str:
        return self.regions.get(region, region)


class SettingsError(PermanentError, RuntimeError):
    """A setting that cannot be used, named in the message."""


_RENAMED = {
    "TEMPORAL_TLS_CERT": "TEMPORAL_TLS_CLIENT_CERT_PATH",
    "TEMPORAL_TLS_KEY": "TEMPORAL_TLS_CLIENT_KEY_PATH",
}


def temporal_profile(env: Mapping[str, str] | None = None) -> ClientConfigProfile:
    """The Temporal client profile: temporal.toml and the `TEMPORAL_*` variables of `env`
    (the process environment by default), checked so that a half-set TLS fails here."""
    env = os.environ if env is None else env
    for legacy, standard in _RENAMED.items():
        if env.get(legacy):
            raise SettingsError(
                f"invalid setting: {legacy} is no longer read; set {standard} instead "
                "(the variables of the temporal CLI)"
            )
    try:
        profile = ClientConfigProfile.load(override_env_vars=dict(env))
    except Exception as exc:  # the bridge's ConfigError, a missing certificate file, ...
        raise SettingsError(f"invalid Temporal client configuration: {exc}") from exc
    tls = profile.tls
    if tls is not None and (tls.client_cert is None) != (tls.client_private_key is None):
        missing = (
            "TEMPORAL_TLS_CLIENT_KEY_PATH (or client_key in the profile)"
            if tls.client_private_key is None
            else "TEMPORAL_TLS_CLIENT_CERT_PATH (or client_cert in the profile)"
        )
        raise SettingsError(
            f"invalid setting: a TLS client certificate needs its key and the reverse; "
            f"{missing} is not set"
        )
    return profile


def environment_settings() -> Settings:
    """The settings exactly as the environment gives them, not yet filled from a stack."""
    try:
        return Settings()
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise SettingsError(f"invalid setting: {problems}") from exc


def load_settings() -> Settings:
    """The settings, unset addresses filled from the embedded stack (see `resolved`)."""
    return environment_settings().resolved()

"""One settings model for every process, read from the environment.

Unset addresses fall back to the embedded stack recorded in GATEWAYFLOW_HOME/stack.json,
so every `gatewayflow` command finds a stack started by `gatewayflow up`.
"""

import json
from pathlib import Path

from pydantic import AliasChoices, Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from gatewayflow.domain.errors import PermanentError

STACK_FILE = "stack.json"


def _env(*names: str) -> AliasChoices:
    return AliasChoices(*names)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", case_sensitive=True)

    home: Path = Field(default=Path(".gatewayflow"), validation_alias=_env("GATEWAYFLOW_HOME"))
    temporal_address: str | None = Field(default=None, validation_alias=_env("TEMPORAL_ADDRESS"))
    temporal_namespace: str = Field(default="default", validation_alias=_env("TEMPORAL_NAMESPACE"))
    temporal_tls: bool = Field(default=False, validation_alias=_env("TEMPORAL_TLS"))
    temporal_tls_cert: Path | None = Field(default=None, validation_alias=_env("TEMPORAL_TLS_CERT"))
    temporal_tls_key: Path | None = Field(default=None, validation_alias=_env("TEMPORAL_TLS_KEY"))
    temporal_api_key: str | None = Field(default=None, validation_alias=_env("TEMPORAL_API_KEY"))
    temporal_ui_url: str | None = Field(default=None, validation_alias=_env("TEMPORAL_UI_URL"))
    mongodb_uri: str | None = Field(default=None, validation_alias=_env("MONGODB_URI"))
    runtime_mongodb_uri: str | None = Field(
        default=None, validation_alias=_env("GATEWAYFLOW_RUNTIME_MONGODB_URI")
    )
    db_name: str = Field(default="gatewayflow", validation_alias=_env("GATEWAYFLOW_DB"))
    kubeconfig: Path | None = Field(default=None, validation_alias=_env("KUBECONFIG"))
    regions: dict[str, str] = Field(
        default_factory=dict,
        validation_alias=_env("GATEWAYFLOW_REGIONS"),
        description="region -> kubeconfig context; empty means context named like the region",
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
    region_deletion_limit: int = Field(
        default=20,
        ge=1,
        validation_alias=_env("GATEWAYFLOW_REGION_DELETION_LIMIT"),
        description="deletions running at once per region, across every worker",
    )
    metrics_port: int | None = Field(
        default=None, validation_alias=_env("GATEWAYFLOW_METRICS_PORT")
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

    @property
    def stack_file(self) -> Path:
        return self.home / STACK_FILE

    def recorded_stack(self) -> dict[str, str]:
        try:
            data = json.loads(self.stack_file.read_text())
        except (OSError, ValueError):
            return {}
        return {k: v for k, v in data.items() if isinstance(v, str)}

    def resolved(self) -> "Settings":
        """Fill unset addresses from the running embedded stack, then from the default ports."""
        stack = self.recorded_stack()
        update: dict[str, object] = {}
        if self.temporal_address is None:
            update["temporal_address"] = stack.get(
                "temporal_address", f"127.0.0.1:{self.temporal_port}"
            )
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
        return self.model_copy(update=update)

    def context_for(self, region: str) -> str:
        return self.regions.get(region, region)

    def workflow_url(self, workflow_id: str) -> str:
        base = (self.temporal_ui_url or f"http://127.0.0.1:{self.ui_port}").rstrip("/")
        return f"{base}/namespaces/{self.temporal_namespace}/workflows/{workflow_id}"


class SettingsError(PermanentError, RuntimeError):
    """A setting that cannot be used, named in the message."""


def load_settings() -> Settings:
    try:
        return Settings().resolved()
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise SettingsError(f"invalid setting: {problems}") from exc

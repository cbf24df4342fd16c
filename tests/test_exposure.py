"""What the shipped configuration exposes: published ports, MongoDB credentials, URIs the
CLI prints, and a Temporal connection configured like the `temporal` CLI's."""

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from rich.console import Console
from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest

from gatewayflow.client import connect
from gatewayflow.settings import Settings, SettingsError, load_settings
from gatewayflow.views import where_to_look
from starter import cli
from tests.test_deploy import SETTINGS_VARS

REPO = Path(__file__).resolve().parent.parent
PASSWORD = "hunter2-not-for-print"


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    return data


def test_compose_publishes_on_localhost_only_and_mongodb_requires_a_password() -> None:
    services = compose()["services"]
    for name, service in services.items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} to the network"
    mongo = services["mongo"]
    env = mongo["environment"]
    assert env["MONGO_INITDB_ROOT_USERNAME"]
    # The password is the operator's, from the environment; compose refuses to start without.
    assert env["MONGO_INITDB_ROOT_PASSWORD"].startswith("${GATEWAYFLOW_MONGO_PASSWORD:?")
    assert "--keyFile" in mongo["command"]  # a replica set with auth needs one
    assert "MONGO_INITDB_ROOT_PASSWORD" in " ".join(mongo["healthcheck"]["test"])
    workers = [s for s in services.values() if s.get("image", "").startswith("gatewayflow-worker")]
    assert workers
    for worker in workers:
        uri = urlsplit(worker["environment"]["MONGODB_URI"])
        assert uri.username == env["MONGO_INITDB_ROOT_USERNAME"]
        assert uri.password == "${GATEWAYFLOW_MONGO_PASSWORD}"


def settings_with_credentials(tmp_path: Path) -> Settings:
    return Settings.model_construct(
        home=tmp_path,
        temporal_address="127.0.0.1:7233",
        temporal_namespace="default",
        temporal_ui_url="http://127.0.0.1:8233",
        mongodb_uri=f"mongodb://admin:{PASSWORD}@db1:27017,db2:27017/?replicaSet=rs0",
        runtime_mongodb_uri=f"mongodb://runtime:{PASSWORD}@rt:27017/?authSource=admin",
        db_name="gatewayflow",
        kubeconfig=tmp_path / "kubeconfig",
        ui_port=8233,
    )


def test_the_cli_never_prints_a_password(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = settings_with_credentials(tmp_path)
    console = Console(record=True, width=200)
    monkeypatch.setattr(cli, "console", console)
    console.print(where_to_look(settings, "shop"))  # after every command on a gateway
    cli.print_addresses(settings)  # `gatewayflow up`
    printed = console.export_text()
    assert PASSWORD not in printed
    assert "mongodb://admin:***@db1:27017,db2:27017/?replicaSet=rs0" in printed
    assert "mongodb://runtime:***@rt:27017/?authSource=admin" in printed


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """The process environment with no setting of ours and no temporal.toml in reach."""
    for name in SETTINGS_VARS | {"TEMPORAL_TLS_CERT", "TEMPORAL_TLS_KEY"}:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("GATEWAYFLOW_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TEMPORAL_CONFIG_FILE", str(tmp_path / "absent.toml"))
    return monkeypatch


@pytest.mark.parametrize(
    ("given", "named"),
    [
        ("TEMPORAL_TLS_CLIENT_CERT_PATH", "TEMPORAL_TLS_CLIENT_KEY_PATH"),
        ("TEMPORAL_TLS_CLIENT_KEY_PATH", "TEMPORAL_TLS_CLIENT_CERT_PATH"),
        ("TEMPORAL_TLS_CERT", "TEMPORAL_TLS_CLIENT_CERT_PATH"),  # the old name, unread now
    ],
)
def test_half_set_tls_stops_start_up_naming_the_variable(
    given: str, named: str, clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    pem = tmp_path / "client.pem"
    pem.write_text("-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n")
    clean_env.setenv(given, str(pem))
    with pytest.raises(SettingsError, match=named):
        load_settings()


@pytest.mark.asyncio(loop_scope="session")
async def test_the_temporal_connection_comes_from_a_temporal_cli_profile(
    stack: Settings, clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A temporal.toml profile, as `temporal` itself reads it, picks the server; the
    standard variables override it."""
    toml = tmp_path / "temporal.toml"
    toml.write_text(
        f'[profile.default]\naddress = "127.0.0.1:1"\n\n'
        f'[profile.embedded]\naddress = "{stack.temporal_address}"\nnamespace = "default"\n'
    )
    clean_env.setenv("TEMPORAL_CONFIG_FILE", str(toml))
    clean_env.setenv("TEMPORAL_PROFILE", "embedded")
    settings = load_settings()
    assert settings.temporal_address == stack.temporal_address
    client = await connect(settings)
    answer = await client.workflow_service.describe_namespace(
        DescribeNamespaceRequest(namespace=settings.temporal_namespace)
    )
    assert answer.namespace_info.name == "default"

    clean_env.setenv("TEMPORAL_ADDRESS", "127.0.0.1:2")  # a variable beats the profile
    assert load_settings().temporal_address == "127.0.0.1:2"
    clean_env.delenv("TEMPORAL_ADDRESS")
    clean_env.setenv("TEMPORAL_PROFILE", "missing")
    with pytest.raises(SettingsError, match="missing"):
        load_settings()

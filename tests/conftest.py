"""Shared fixtures: one embedded stack for the test session, in a temporary home on free ports.

Nothing here changes os.environ, so a developer's own stack under .gatewayflow/ is never
used or stopped. A subprocess reaches the session stack through `stack_env(settings)`.
"""

import json
import os
import random
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import AliasChoices
from pymongo import MongoClient
from pymongo.database import Database

from gatewayflow.settings import Settings
from gatewayflow_dev import stack as devstack
from tests.emulator_admin import EmulatorAdmin

# The emulator's delays for the session, those of the benchmarks (bench/__main__.py): a
# test that needs a slower cluster says so with `EmulatorAdmin.timing(...)`.
SESSION_TIMING = {"deleteDelay": 0.05, "readyDelay": 0.05}


def free_ports(count: int) -> list[int]:
    """Distinct free ports below the kernel's ephemeral range.

    Servers such as the Temporal dev server pick extra ports of their own from the
    ephemeral range as they start; a port we picked from that range could be handed to
    one of them again before our own server binds it.
    """
    low, _high = (
        int(x) for x in Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
    )
    ports: list[int] = []
    rng = random.Random()
    while len(ports) < count:
        port = rng.randrange(20000, max(20001, low))
        if port in ports:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        ports.append(port)
    return ports


def embedded_settings(home: Path) -> Settings:
    """Unresolved settings for an embedded stack in `home` on free ports.

    Built from explicit values and the defaults (model_construct reads no environment),
    so a developer's TEMPORAL_ADDRESS or GATEWAYFLOW_HOME cannot leak into a test.
    """
    temporal, ui, mongo, kube = free_ports(4)
    return Settings.model_construct(
        home=home, temporal_port=temporal, ui_port=ui, mongo_port=mongo, kube_port=kube
    )


def _env_name(alias: Any) -> str:
    assert isinstance(alias, AliasChoices)
    return str(alias.choices[0])


_SETTINGS_VARS = {_env_name(field.validation_alias) for field in Settings.model_fields.values()}


def stack_env(settings: Settings) -> dict[str, str]:
    """The environment a subprocess (`gatewayflow ...`, worker.py) needs to use `settings`.

    Every setting is passed explicitly and any gatewayflow variable of the caller's
    environment is dropped. With the resolved session settings the addresses are set, so
    `gatewayflow up` in this environment starts nothing; note that GATEWAYFLOW_HOME is the
    session home, so `gatewayflow down` in it would stop the session stack.
    """
    env = {k: v for k, v in os.environ.items() if k not in _SETTINGS_VARS}
    for name, field in Settings.model_fields.items():
        value = getattr(settings, name)
        if value is not None:
            text = json.dumps(value) if isinstance(value, dict) else str(value)
            env[_env_name(field.validation_alias)] = text
    return env


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """Resolved settings of the embedded stack shared by the whole session."""
    settings = embedded_settings(tmp_path_factory.mktemp("gatewayflow-home"))
    started = devstack.start(settings)
    EmulatorAdmin.of(started.settings).set_config(**SESSION_TIMING)
    yield started.settings
    devstack.stop(settings)


@pytest.fixture(scope="session")
def mongo_client(stack: Settings) -> Iterator[MongoClient[dict[str, Any]]]:
    client: MongoClient[dict[str, Any]] = MongoClient(stack.mongodb_uri)
    yield client
    client.close()


@pytest.fixture
def db_name() -> str:
    """A MongoDB database name of this test's own."""
    return f"gf_test_{uuid.uuid4().hex[:8]}"


@pytest.fixture
def mongo(
    mongo_client: MongoClient[dict[str, Any]], db_name: str
) -> Iterator[Database[dict[str, Any]]]:
    """The test's own database on the session stack, dropped afterwards."""
    yield mongo_client[db_name]
    mongo_client.drop_database(db_name)

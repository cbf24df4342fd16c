"""The Temporal client every process uses: the pydantic data converter, the connection
as the `temporal` CLI configures it (`temporalio.envconfig`: temporal.toml profiles and the
standard TEMPORAL_* variables, TLS and API keys included), and tracing when it is on."""

from collections.abc import Mapping

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.runtime import Runtime

from gatewayflow import tracing
from gatewayflow.settings import Settings, temporal_profile


async def connect(
    settings: Settings, runtime: Runtime | None = None, env: Mapping[str, str] | None = None
) -> Client:
    """A Temporal client with the pydantic data converter.

    The address and namespace are the resolved settings' (the profile's, else the embedded
    stack's); TLS, the API key and gRPC metadata come from the profile.
    """
    config = temporal_profile(env).to_client_connect_config()
    config["target_host"] = settings.temporal_address or f"127.0.0.1:{settings.temporal_port}"
    config["namespace"] = settings.temporal_namespace
    return await Client.connect(
        **config,
        data_converter=pydantic_data_converter,
        runtime=runtime,
        interceptors=tracing.temporal_interceptors(env),
    )

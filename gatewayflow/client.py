"""The Temporal client every process uses: the pydantic data converter, TLS or an API key."""

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.runtime import Runtime
from temporalio.service import TLSConfig

from gatewayflow.settings import Settings


async def connect(settings: Settings, runtime: Runtime | None = None) -> Client:
    """A Temporal client with the pydantic data converter (and mTLS or an API key)."""
    tls: bool | TLSConfig = settings.temporal_tls or settings.temporal_api_key is not None
    if settings.temporal_tls_cert and settings.temporal_tls_key:
        tls = TLSConfig(
            client_cert=settings.temporal_tls_cert.read_bytes(),
            client_private_key=settings.temporal_tls_key.read_bytes(),
        )
    return await Client.connect(
        settings.temporal_address or f"127.0.0.1:{settings.temporal_port}",
        namespace=settings.temporal_namespace,
        data_converter=pydantic_data_converter,
        tls=tls,
        api_key=settings.temporal_api_key,
        runtime=runtime,
    )

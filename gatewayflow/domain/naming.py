"""Names of everything a gateway owns, derived from its id (docs/inventory.md)."""

import re

from gatewayflow.domain.errors import PermanentError

OWNER_LABEL = "gatewayflow.dev/gateway"
ENVIRONMENTS: tuple[str, ...] = ("dev", "staging", "prod")

# A DNS-1123 label that starts with a letter (a Service name must, DNS-1035), short
# enough that every derived name fits: CronJob names are capped at 52 characters.
_ID_RE = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
MAX_ID_LENGTH = 30


class InvalidGatewayId(PermanentError, ValueError):
    """A gateway id that cannot name Kubernetes objects; rejected at the door."""


def validate_gateway_id(gateway_id: str) -> str:
    if not isinstance(gateway_id, str) or not gateway_id:
        raise InvalidGatewayId("gateway id must be a non-empty string")
    if len(gateway_id) > MAX_ID_LENGTH:
        raise InvalidGatewayId(
            f"gateway id {gateway_id!r} is {len(gateway_id)} characters; at most "
            f"{MAX_ID_LENGTH} are allowed"
        )
    if not _ID_RE.fullmatch(gateway_id):
        raise InvalidGatewayId(
            f"gateway id {gateway_id!r} is not a DNS-1123 label: use lower-case letters, "
            "digits and '-', starting with a letter and ending with a letter or digit"
        )
    return gateway_id


def owner_labels(gateway_id: str) -> dict[str, str]:
    return {OWNER_LABEL: gateway_id}


def owner_selector(gateway_id: str) -> str:
    return f"{OWNER_LABEL}={gateway_id}"


def namespace(gateway_id: str) -> str:
    return f"gw-{gateway_id}"


def runtime_database(gateway_id: str) -> str:
    return f"gw_{gateway_id.replace('-', '_')}"


def runtime_user(gateway_id: str) -> str:
    return f"gw_{gateway_id.replace('-', '_')}_app"


def config_map(gateway_id: str) -> str:
    return f"{gateway_id}-config"


def deployment(gateway_id: str) -> str:
    return gateway_id


def service(gateway_id: str) -> str:
    return gateway_id


def db_secret(gateway_id: str) -> str:
    return f"{gateway_id}-db"


def cron_job(gateway_id: str, trigger_id: str) -> str:
    return f"{gateway_id}-trigger-{trigger_id}"


def stage_route(gateway_id: str, env: str) -> str:
    return f"{gateway_id}-stage-{env}"


def domain_route(gateway_id: str, env: str) -> str:
    return f"{gateway_id}-{env}"


def plugin_config(gateway_id: str) -> str:
    return f"{gateway_id}-plugins"


def tls(gateway_id: str, env: str) -> str:
    return f"{gateway_id}-{env}-tls"


def custom_tls(gateway_id: str) -> str:
    return f"{gateway_id}-custom-tls"


def certificate(gateway_id: str) -> str:
    return f"{gateway_id}-runtime-custom-domain"


def host(gateway_id: str, env: str, region: str) -> str:
    return f"{gateway_id}-{env}.{region}.gatewayflow.local"


def gateway_workflow_id(gateway_id: str) -> str:
    return f"gateway/{gateway_id}"


def deletion_workflow_id(gateway_id: str) -> str:
    return f"gateway-deletion/{gateway_id}"


def domain_workflow_id(gateway_id: str) -> str:
    return f"runtime-domain/{gateway_id}"

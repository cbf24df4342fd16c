"""Names of everything a gateway owns, derived from its id and its installation
(docs/inventory.md)."""

import hashlib
import re

from gatewayflow.domain.errors import PermanentError

OWNER_LABEL = "gatewayflow.dev/gateway"
INSTALLATION_LABEL = "gatewayflow.dev/installation"
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


class InvalidInstallation(PermanentError, ValueError):
    """An installation id that cannot be a label value and a part of workflow ids."""


# A DNS-1123 label: a label value, a workflow id part and a registry key as it is.
_INSTALLATION_RE = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
MAX_INSTALLATION_LENGTH = 63


def validate_installation(installation: str) -> str:
    if (
        not isinstance(installation, str)
        or len(installation) > MAX_INSTALLATION_LENGTH
        or not _INSTALLATION_RE.fullmatch(installation)
    ):
        raise InvalidInstallation(
            f"installation {installation!r} is not a DNS-1123 label: lower-case letters, "
            f"digits and '-', at most {MAX_INSTALLATION_LENGTH} characters"
        )
    return installation


def installation_of_database(db_name: str) -> str:
    """The default installation id: the control database's name when it is a DNS label,
    else its readable part and a hash of the whole, so that two database names never
    make one installation (a mistyped GATEWAYFLOW_DB is another installation)."""
    if _INSTALLATION_RE.fullmatch(db_name) and len(db_name) <= MAX_INSTALLATION_LENGTH:
        return db_name
    readable = re.sub(r"[^a-z0-9]+", "-", db_name.lower()).strip("-")[:40].strip("-")
    digest = hashlib.sha256(db_name.encode()).hexdigest()[:8]
    return f"{readable}-{digest}" if readable else f"db-{digest}"


def is_valid_gateway_id(gateway_id: str) -> bool:
    """Whether the id may name anything outside MongoDB (validate_gateway_id says why not)."""
    try:
        validate_gateway_id(gateway_id)
    except InvalidGatewayId:
        return False
    return True


def owner_labels(installation: str, gateway_id: str) -> dict[str, str]:
    """What makes an object this gateway's: both labels, checked before every write."""
    return {OWNER_LABEL: gateway_id, INSTALLATION_LABEL: installation}


def owner_selector(installation: str, gateway_id: str) -> str:
    return f"{OWNER_LABEL}={gateway_id},{INSTALLATION_LABEL}={installation}"


def installation_selector(installation: str) -> str:
    """Every object of any gateway of the installation."""
    return f"{OWNER_LABEL},{INSTALLATION_LABEL}={installation}"


def unadopted_selector(gateway_id: str) -> str:
    """Objects of the gateway made before installations had labels (see adoption)."""
    return f"{OWNER_LABEL}={gateway_id},!{INSTALLATION_LABEL}"


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


# A gateway's workflow ids: `<kind>/<installation>/<gateway id>`, so that installations
# sharing a Temporal namespace never reach each other's workflows. Versions before
# installations used `<kind>/<gateway id>` (a scope of ""): a workflow started so derives
# its children's ids the same way (`related_workflow_id`), and replays as it ran.
GATEWAY_WORKFLOW = "gateway"
DELETION_WORKFLOW = "gateway-deletion"
DOMAIN_WORKFLOW = "runtime-domain"


def _workflow_id(kind: str, scope: str, gateway_id: str) -> str:
    return f"{kind}/{scope}/{gateway_id}" if scope else f"{kind}/{gateway_id}"


def gateway_workflow_id(installation: str, gateway_id: str) -> str:
    return _workflow_id(GATEWAY_WORKFLOW, installation, gateway_id)


def deletion_workflow_id(installation: str, gateway_id: str) -> str:
    return _workflow_id(DELETION_WORKFLOW, installation, gateway_id)


def domain_workflow_id(installation: str, gateway_id: str) -> str:
    return _workflow_id(DOMAIN_WORKFLOW, installation, gateway_id)


def unscoped_gateway_workflow_id(gateway_id: str) -> str:
    """`gateway/<id>`: the id of a gateway's workflow before installations."""
    return _workflow_id(GATEWAY_WORKFLOW, "", gateway_id)


def workflow_scope(workflow_id: str) -> tuple[str, str]:
    """(installation, gateway id) of one of a gateway's workflow ids; the installation
    is "" for an id of the versions before installations."""
    _kind, _, rest = workflow_id.partition("/")
    scope, _, gateway_id = rest.rpartition("/")
    return scope, gateway_id


def related_workflow_id(workflow_id: str, kind: str, gateway_id: str) -> str:
    """The id of a workflow of `kind` for `gateway_id` in the scope of `workflow_id`
    (a gateway's workflow, its deletion or its domain's): how a workflow names its
    children and the deletions it wakes, from nothing but its own recorded id."""
    scope, _ = workflow_scope(workflow_id)
    return _workflow_id(kind, scope, gateway_id)

"""The RuntimeDomain collection: the APISIX side of a gateway, with its own state machine."""

from gatewayflow.domain.documents import RuntimeDomain
from gatewayflow.domain.states import DomainPhase, DomainState
from gatewayflow.store.client import Db
from gatewayflow.store.per_gateway import PerGatewayRepository


class RuntimeDomainRepository(PerGatewayRepository[RuntimeDomain, DomainState, DomainPhase]):
    def __init__(self, db: Db) -> None:
        super().__init__(db, RuntimeDomain)

"""The model: a small reference of what the system must end up with, kept apart from it.

Per valid gateway: the last accepted intent (a Deleted, once accepted, stays), where its
resources live and what the torture put into its namespace. Per junk document: its `_id`
and whether a refusal must be recorded. Nothing here reads the code under test.
"""

from dataclasses import dataclass, field
from typing import Any

from gatewayflow.domain.states import GatewayPhase, GatewayState

_S = GatewayState

# The (state, phase) at which each intent has converged; Deleted means the document is gone.
CONVERGED: dict[GatewayState, tuple[GatewayState, GatewayPhase]] = {
    _S.RUNNING: (_S.RUNNING, GatewayPhase.STARTED),
    _S.RESTARTING: (_S.RUNNING, GatewayPhase.STARTED),
    _S.STOPPED: (_S.STOPPED, GatewayPhase.STOPPED),
}
# A start whose pods never get ready goes back to Stopped, the reason recorded.
TIMED_OUT = (_S.STOPPED, GatewayPhase.STOPPED)
TIMED_OUT_MARK = "timed out"
# Junk whose gatewayId is not a DNS-1123 label: refused by the feed and the sweep alike.
INVALID_ID_KINDS = ("bad-chars", "neighbour", "too-long", "uppercase")


@dataclass(frozen=True)
class KubeRef:
    region: str
    kind: str
    namespace: str
    name: str


@dataclass
class ForeignObject:
    """An object without the gateway's label, dropped into its namespace."""

    ref: KubeRef
    uid: str
    resource_version: str


@dataclass
class Gateway:
    gateway_id: str
    intent: GatewayState
    region: str = "local"
    regions: set[str] = field(default_factory=set)
    """Where it may live: its region, and one it was moved to before the system placed it."""
    may_time_out: bool = False
    """A start under pods that never get ready may end Stopped (with the reason)."""
    foreign: list[ForeignObject] = field(default_factory=list)
    finalized: list[KubeRef] = field(default_factory=list)
    done: bool = False
    """Deleted and checked: nothing of it is left."""
    orphaned: bool = False
    """Its document was deleted by hand: what it owns is the reaper's to remove."""

    def accept(self, state: GatewayState, never_ready: bool) -> None:
        """A new intent was accepted; a Deleted is never replaced."""
        if self.intent is _S.DELETED:
            return
        self.intent = state
        self.may_time_out = never_ready if state is not _S.STOPPED else False

    def orphan(self) -> None:
        """The document is gone: nothing of it may remain once the reaper has run."""
        self.orphaned = True
        self.intent = _S.DELETED

    def expected(self) -> list[tuple[GatewayState, GatewayPhase]]:
        if self.intent is _S.DELETED:
            return []
        outcomes = [CONVERGED[self.intent]]
        if self.may_time_out and self.intent is not _S.STOPPED:
            outcomes.append(TIMED_OUT)
        return outcomes


@dataclass
class Junk:
    """A document the system must never act on."""

    doc_id: Any
    what: str
    gateway_id: Any
    collection: str = "ApiGateway"
    refusal_expected: bool = True


@dataclass
class Model:
    gateways: dict[str, Gateway] = field(default_factory=dict)
    junk: list[Junk] = field(default_factory=list)
    never_ready: bool = False
    stream_was_off: bool = False

    def live(self) -> list[Gateway]:
        return [gw for gw in self.gateways.values() if not gw.done]

    def add(self, gateway_id: str, region: str = "local") -> Gateway:
        gw = Gateway(
            gateway_id, _S.RUNNING, region, regions={region}, may_time_out=self.never_ready
        )
        self.gateways[gateway_id] = gw
        return gw

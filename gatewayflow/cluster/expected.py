"""How a gateway's live objects differ from what its phase implies.

Pure: what a phase implies is declared with what a gateway owns (gatewayflow/ownership.py);
the drift check lists the labelled objects of each region (activities/drift.py) and hands
every gateway's share to `differences`.
"""

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from gatewayflow.cluster.kinds import ObjectRef

Manifest = dict[str, Any]
Live = Mapping[ObjectRef, Manifest]


@dataclass(frozen=True)
class Expected:
    """What a converged gateway's phase implies in its cluster."""

    present: list[ObjectRef] = field(default_factory=list)
    absent: list[ObjectRef] = field(default_factory=list)
    specs: dict[ObjectRef, Manifest] = field(default_factory=dict)
    """Spec fields each object must hold as applied (the server may add more)."""
    suspended: dict[ObjectRef, bool] = field(default_factory=dict)
    """What each object's `spec.suspend` must be, where it exists."""


@dataclass(frozen=True)
class Difference:
    ref: ObjectRef
    problem: str  # "missing", "unexpected", "spec changed", "suspended", "not suspended"

    def __str__(self) -> str:
        return f"{self.ref} {self.problem}"


def differences(expected: Expected, live: Live) -> list[Difference]:
    """How `live` (the gateway's labelled objects) differs from `expected`."""
    found = [Difference(ref, "missing") for ref in expected.present if ref not in live]
    found += [Difference(ref, "unexpected") for ref in expected.absent if ref in live]
    found += [
        Difference(ref, "spec changed")
        for ref, spec in expected.specs.items()
        if ref in live and not is_subset(spec, live[ref].get("spec"))
    ]
    for ref, suspend in expected.suspended.items():
        if ref in live and bool((live[ref].get("spec") or {}).get("suspend")) is not suspend:
            found.append(Difference(ref, "not suspended" if suspend else "suspended"))
    return found


QUANTITIES = frozenset({"requests", "limits"})
"""Keys whose values are resource quantities, which a server may answer in another form
of the same amount ("0.5" as "500m", "1024Mi" as "1Gi")."""


def is_subset(wanted: Any, live: Any, *, quantities: bool = False) -> bool:
    """Whether every field we set has the value we set (the server may add more)."""
    if isinstance(wanted, dict):
        return isinstance(live, dict) and all(
            is_subset(v, live.get(k), quantities=quantities or k in QUANTITIES)
            for k, v in wanted.items()
        )
    if isinstance(wanted, list):
        return (
            isinstance(live, list)
            and len(live) == len(wanted)
            and all(is_subset(w, x) for w, x in zip(wanted, live, strict=True))
        )
    if wanted != live and quantities:
        return same_quantity(wanted, live)
    return bool(wanted == live)


def same_quantity(wanted: Any, live: Any) -> bool:
    """Whether two Kubernetes quantities are the same amount."""
    # Imported here: the client is loaded only by processes that talk to a cluster.
    from kubernetes.utils.quantity import parse_quantity

    try:
        return bool(parse_quantity(wanted) == parse_quantity(live))  # type: ignore[no-untyped-call]
    except (TypeError, ValueError):
        return False

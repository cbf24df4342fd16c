"""The orphan reaper's blast-radius limits: when a run adopts nothing at all.

An orphan is "labelled objects without a gateway document", so whatever hides documents
from the reaper (a mistyped GATEWAYFLOW_DB, an empty or restored database, an unreadable
collection) makes live gateways look orphaned, all at once. A run therefore adopts nothing
when the gateways collection cannot be read, when it holds no document while orphans have
objects, or when it would adopt more than GATEWAYFLOW_REAP_MAX orphans, or more than
GATEWAYFLOW_REAP_MAX_SHARE of the gateways, of one region. An operator who has looked
(`gatewayflow reap`) takes such a run through with `--confirm N`: it goes ahead only if
it adopts exactly N, the number the operator saw.

A region's gateways are those with a document placed there and those with a labelled
Namespace there, together: an empty or wrong database cannot make a share look small.
"""

from collections import defaultdict
from dataclasses import dataclass

from gatewayflow.deps import Deps
from gatewayflow.domain.messages import HoldKind, Orphan, OrphanScan, ReapHold
from gatewayflow.settings import Settings
from gatewayflow.store.gateways import COLLECTION as GATEWAYS


@dataclass(frozen=True)
class Census:
    """What a run is weighed against: the gateway documents, and each region's gateways
    by document or labelled Namespace."""

    documents: int
    gateways: dict[str, set[str]]


def take_census(deps: Deps, regions: list[str]) -> Census:
    """Raises PyMongoError when the gateways collection cannot be read."""
    gateways: dict[str, set[str]] = defaultdict(set)
    documents = 0
    projection = {"gatewayId": 1, "region": 1, "resourceRegion": 1}
    for doc in deps.db[GATEWAYS].find({}, projection):
        documents += 1
        region = doc.get("resourceRegion") or doc.get("region")
        if isinstance(region, str):
            gateways[region].add(str(doc.get("gatewayId")))
    for region in regions:
        gateways[region].update(deps.cluster(region).gateway_namespaces().values())
    return Census(documents, dict(gateways))


def unreachable(settings: Settings, error: Exception) -> ReapHold:
    """The error's type only: its text may name servers."""
    return ReapHold(
        kind=HoldKind.UNREACHABLE,
        reason=f"the gateways collection {settings.db_name}.{GATEWAYS} cannot be read "
        f"({type(error).__name__}), and without it every gateway looks orphaned; "
        "the next run tries again",
    )


def hold_for(
    due: list[Orphan], census: Census, settings: Settings, confirm: int | None
) -> ReapHold | None:
    """Why a run that would adopt `due` must adopt nothing; None when it may go ahead."""
    count = len(due)
    if confirm is not None:
        if confirm == count:
            return None
        return ReapHold(
            kind=HoldKind.UNCONFIRMED,
            reason=f"confirmed {confirm}, but this run would adopt {count}; "
            "`gatewayflow reap` shows what a run would adopt now",
            would_adopt=count,
        )
    if not due:
        return None
    if census.documents == 0:
        return ReapHold(
            kind=HoldKind.EMPTY,
            reason=f"the gateways collection {settings.db_name}.{GATEWAYS} is empty while "
            f"{count} gateway(s) have labelled objects or databases: with a wrong "
            "GATEWAYFLOW_DB or MONGODB_URI every gateway looks orphaned",
            would_adopt=count,
        )
    by_region: dict[str, set[str]] = defaultdict(set)
    for orphan in due:
        by_region[orphan.region].add(orphan.gateway_id)
    over = []
    for region, ids in sorted(by_region.items()):
        total = len(census.gateways.get(region, set()) | ids)
        share_exceeded = len(ids) > 1 and len(ids) > settings.reap_max_share * total
        if len(ids) > settings.reap_max or share_exceeded:
            over.append(f"{len(ids)} of the {total} gateways of region {region}")
    if not over:
        return None
    return ReapHold(
        kind=HoldKind.LIMIT,
        reason=f"it would adopt {', '.join(over)}: more than GATEWAYFLOW_REAP_MAX "
        f"({settings.reap_max}) or GATEWAYFLOW_REAP_MAX_SHARE ({settings.reap_max_share:.0%}) "
        "of a region's gateways",
        would_adopt=count,
    )


def limited(
    scan: OrphanScan, census: Census, settings: Settings, confirm: int | None
) -> OrphanScan:
    """The scan with nothing due when the run must hold: its due orphans become `held`."""
    hold = hold_for(scan.due, census, settings, confirm)
    if hold is None:
        return scan
    return OrphanScan(waiting=scan.waiting, held=scan.due, hold=hold)

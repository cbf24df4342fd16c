"""What activities need, built once per worker: store repositories, cluster regions and
the declaration of what a gateway owns."""

from functools import cached_property
from typing import TYPE_CHECKING

from pymongo import MongoClient
from pymongo.database import Database as MongoDatabase

from gatewayflow.ownership import OWNERSHIP, Ownership
from gatewayflow.settings import Settings
from gatewayflow.store.children import ChildRepository
from gatewayflow.store.client import connect
from gatewayflow.store.databases import DatabaseRepository, RuntimeDatabases
from gatewayflow.store.deletion_guard import DeletionGuardRepository, GuardLimits
from gatewayflow.store.domains import RuntimeDomainRepository
from gatewayflow.store.drift_checks import DriftCheckRepository
from gatewayflow.store.gateways import GatewayRepository
from gatewayflow.store.indexes import ensure_indexes
from gatewayflow.store.permits import PermitRepository
from gatewayflow.store.sightings import SightingRepository

if TYPE_CHECKING:  # the Kubernetes client is imported on first use: a CLI command that
    # fails on MongoDB, or needs no cluster, starts faster without it
    from gatewayflow.cluster.client import Cluster
    from gatewayflow.cluster.regions import Regions


class Deps:
    """Lazily connected; shared by every activity thread of a worker."""

    def __init__(
        self, settings: Settings, *, indexes: bool = True, ownership: Ownership = OWNERSHIP
    ) -> None:
        """`indexes`: create every index on first connect (read-only commands pass False).
        `ownership`: what a gateway owns; every step, check and listing reads it here."""
        self.settings = settings
        self.ownership = ownership
        self._indexes = indexes

    @cached_property
    def db(self) -> MongoDatabase:  # type: ignore[type-arg]
        db = connect(self.settings.mongodb_uri or "", self.settings.db_name)
        if self._indexes:
            ensure_indexes(db)
        return db

    @cached_property
    def gateways(self) -> GatewayRepository:
        return GatewayRepository(self.db)

    @cached_property
    def children(self) -> ChildRepository:
        return ChildRepository(self.db)

    @cached_property
    def domains(self) -> RuntimeDomainRepository:
        return RuntimeDomainRepository(self.db)

    @cached_property
    def databases(self) -> DatabaseRepository:
        return DatabaseRepository(self.db)

    @cached_property
    def permits(self) -> PermitRepository:
        return PermitRepository(self.db)

    @cached_property
    def deletion_guard(self) -> DeletionGuardRepository:
        return DeletionGuardRepository(self.db)

    @property
    def guard_limits(self) -> GuardLimits:
        s = self.settings
        return GuardLimits(
            s.deletion_guard_count, s.deletion_guard_share, s.deletion_guard_window_seconds
        )

    @cached_property
    def drift_checks(self) -> DriftCheckRepository:
        return DriftCheckRepository(self.db)

    @cached_property
    def sightings(self) -> SightingRepository:
        return SightingRepository(self.db)

    @cached_property
    def runtime(self) -> RuntimeDatabases:
        uri = self.settings.runtime_mongodb_uri or self.settings.mongodb_uri or ""
        return RuntimeDatabases(
            MongoClient(uri, serverSelectionTimeoutMS=5000), self.settings.installation
        )

    @cached_property
    def regions(self) -> "Regions":
        from gatewayflow.cluster.regions import Regions

        assert self.settings.kubeconfig is not None, "settings must be resolved"
        return Regions(
            self.settings.kubeconfig,
            self.settings.regions,
            installation=self.settings.installation,
            pool_size=self.settings.max_concurrent_activities,
        )

    def cluster(self, region: str) -> "Cluster":
        return self.regions.cluster(region)

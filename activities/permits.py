"""Per-region deletion permits (gatewayflow/store/permits.py): the limit is this worker's
GATEWAYFLOW_REGION_DELETION_LIMIT, the queue and the holders live in MongoDB."""

from activities.base import Activities, activity_method
from gatewayflow.domain.messages import PermitPlace, PermitRequest


class PermitActivities(Activities):
    @activity_method
    def acquire_permit(self, request: PermitRequest) -> PermitPlace:
        """Never waits: a deletion that is queued waits in its workflow (holding no
        activity slot), woken by the release that frees its permit."""
        gid, region = request.gateway_id, request.region
        limit = self.deps.settings.region_deletion_limit
        place = self.deps.permits.acquire(region, gid, limit)
        waiting = (
            None
            if place.granted
            else f"a deletion permit of region {region}: {place.ahead} ahead, "
            f"{place.running} of {limit} deleting"
        )
        self.deps.gateways.record_progress(gid, waiting_on=waiting)
        return place

    @activity_method
    def release_permit(self, request: PermitRequest) -> PermitPlace:
        """Returns who got a permit by this release: their workflows are signalled."""
        limit = self.deps.settings.region_deletion_limit
        return self.deps.permits.release(request.region, request.gateway_id, limit)

"""The ApiGateway collection: intent (state), progress (phase) and the sweep's query."""

import logging
from collections.abc import Collection
from datetime import datetime
from enum import Enum
from typing import Any

from pymongo import ReturnDocument
from pymongo.collection import Collection as MongoCollection
from pymongo.errors import DuplicateKeyError, WriteError

from gatewayflow.domain.documents import ApiGateway, CancelledDeletion, Progress, utcnow
from gatewayflow.domain.naming import InvalidGatewayId, validate_gateway_id
from gatewayflow.domain.states import GatewayPhase, GatewayState
from gatewayflow.domain.transitions import (
    GatewayAction,
    Request,
    RequestRefused,
    check_request,
    decide,
)
from gatewayflow.store.client import Db, RawDoc
from gatewayflow.store.errors import (
    GatewayExists,
    MalformedDocument,
    StateChangeRefused,
    UnknownGateway,
)
from gatewayflow.store.parsing import OnMalformed, log_malformed, parse, parse_all

COLLECTION = "ApiGateway"
CONVERGED = (
    (GatewayState.RUNNING, GatewayPhase.STARTED),
    (GatewayState.STOPPED, GatewayPhase.STOPPED),
)
# The order in which the sweep looks at intents: deletes first.
SWEEP_ORDER: tuple[GatewayState, ...] = (
    GatewayState.DELETED,
    *(state for state in GatewayState if state is not GatewayState.DELETED),
)

log = logging.getLogger("gatewayflow.store")
# MongoDB's code for a dotted path through a field that is not an object.
_PATH_NOT_VIABLE = 28
AFTER = ReturnDocument.AFTER


def refusal(problem: Exception) -> str:
    return f"refused, nothing was done: {problem}"


def refuse(collection: "MongoCollection[RawDoc]", doc_id: object, reason: str) -> bool:
    """`GatewayRepository.refuse` for callers holding the collection (the change feed)."""
    log.warning("ApiGateway _id %s: %s", doc_id, reason)
    try:
        result = collection.update_one(
            {"_id": doc_id, "progress.lastError": {"$ne": reason}},
            {"$set": {"progress.lastError": reason, "progress.updatedAt": utcnow()}},
        )
    except WriteError as exc:  # e.g. a `progress` that is not an object: logged above
        log.warning("cannot record the refusal in ApiGateway _id %s: %s", doc_id, exc)
        return False
    return result.modified_count == 1


def refuse_stale_delete(gateway: ApiGateway) -> None:
    """RequestRefused for a `delete` signal to a gateway whose deletion was cancelled."""
    cancelled = gateway.deletion_cancelled
    if cancelled is None or gateway.state is GatewayState.DELETED:
        return
    gid = gateway.gateway_id
    raise RequestRefused(
        f"cannot delete {gid} by a signal: its held deletion was cancelled at "
        f"{cancelled.at.isoformat(timespec='seconds')} ({cancelled.reason}), and a `delete` "
        f"signal may be one sent before that; delete it with `gatewayflow delete {gid}` "
        "(an update) or by writing state Deleted"
    )


class Unset(Enum):
    """Marks an optional argument that was not passed, where None means "clear the field"."""

    UNSET = "unset"


UNSET = Unset.UNSET


class GatewayRepository:
    def __init__(self, db: Db) -> None:
        self._col = db[COLLECTION]

    def _update(self, query: RawDoc, update: RawDoc | list[RawDoc]) -> bool:
        """One conditional update; whether it matched.

        Progress is written by dotted path, which fails on a document whose `progress`
        (or `progress.drift`) is not an object; that field is the workflow's own, so it is
        set aside under `malformed` and the write made again, never retried for ever."""
        try:
            return self._col.update_one(query, update).matched_count == 1
        except WriteError as exc:
            if exc.code != _PATH_NOT_VIABLE or not self._set_aside_progress(query["gatewayId"]):
                raise
        return self._col.update_one(query, update).matched_count == 1

    def _set_aside_progress(self, gateway_id: str) -> bool:
        """Replace a `progress` or `progress.drift` that is not an object; whether one was."""
        raw = self._col.find_one({"gatewayId": gateway_id}, {"progress": 1})
        progress = None if raw is None else raw.get("progress")
        if progress is not None and not isinstance(progress, dict):
            replaced = {"progress": {"malformed": progress}}
            found = {"gatewayId": gateway_id, "progress": progress}
        elif isinstance(progress, dict) and not isinstance(progress.get("drift", {}), dict):
            replaced = {"progress.drift": {"malformed": progress["drift"]}}
            found = {"gatewayId": gateway_id, "progress.drift": progress["drift"]}
        else:
            return False
        log.warning("gateway %s: progress was not an object; set aside as 'malformed'", gateway_id)
        self._col.update_one(found, {"$set": replaced})
        return True

    def insert(self, gateway: ApiGateway) -> None:
        """A new gateway; its region is where its resources will live, for good."""
        if gateway.resource_region is None:
            gateway = gateway.model_copy(update={"resource_region": gateway.region})
        try:
            self._col.insert_one(gateway.to_mongo())
        except DuplicateKeyError:
            raise GatewayExists(gateway.gateway_id) from None

    def get(self, gateway_id: str) -> ApiGateway | None:
        """The gateway, None if absent; MalformedDocument if it does not validate."""
        raw = self._col.find_one({"gatewayId": gateway_id})
        return None if raw is None else parse(ApiGateway, raw)

    def require(self, gateway_id: str) -> ApiGateway:
        gateway = self.get(gateway_id)
        if gateway is None:
            raise UnknownGateway(gateway_id)
        return gateway

    def set_state(
        self,
        gateway_id: str,
        state: GatewayState,
        *,
        expected: GatewayState | None = None,
        refuse_if_phase_in: Collection[GatewayPhase] = (),
    ) -> ApiGateway:
        """Write a request's intent atomically: only while the state is still `expected`
        (the one the request was checked against) and the phase not in `refuse_if_phase_in`.

        So a request never lands on a delete written after its check: Deleted is sticky.
        Returns the updated gateway; StateChangeRefused names what refused it.
        """
        query: RawDoc = {"gatewayId": gateway_id}
        if expected is not None:
            query["state"] = GatewayState(expected).value
        if refuse_if_phase_in:
            # `$in` of the allowed phases rather than `$nin`: an index plans it on every
            # server (docs/dev-server.md).
            refused = {GatewayPhase(p) for p in refuse_if_phase_in}
            query["phase"] = {"$in": [p.value for p in GatewayPhase if p not in refused]}
        # A new request from the user: the error of the previous one is history.
        update: RawDoc = {
            "$set": {
                "state": GatewayState(state).value,
                "updatedAt": utcnow(),
                "progress.lastError": None,
                "progress.nextAttemptAt": None,
            }
        }
        try:
            raw = self._col.find_one_and_update(query, update, return_document=AFTER)
        except WriteError as exc:
            if exc.code != _PATH_NOT_VIABLE or not self._set_aside_progress(gateway_id):
                raise
            raw = self._col.find_one_and_update(query, update, return_document=AFTER)
        if raw is not None:
            return parse(ApiGateway, raw)
        current = self._col.find_one({"gatewayId": gateway_id}, {"state": 1, "phase": 1})
        if current is None:
            raise UnknownGateway(gateway_id)
        raise StateChangeRefused(
            gateway_id, GatewayState(state), str(current.get("phase")), str(current.get("state"))
        )

    def request(
        self, gateway_id: str, what: Request, attempts: int = 5, *, signal: bool = False
    ) -> tuple[ApiGateway, bool]:
        """Check a request against the rules and write its intent; the gateway after it,
        and whether anything was written (a delete of a gateway already Deleted is not).

        The write is a compare-and-set on the state the request was checked against: when
        someone else changed the state in between (a raw write, say), the request is
        checked again against the new state, so it never undoes an intent it did not see.
        RequestRefused (nothing written) when the rules refuse it.

        A `delete` that came as a `signal` never writes over the intent that a cancelled
        deletion gave back: it may be the dispatcher's, sent for the Deleted it read before
        the cancel (a sweep, or a change stream resumed from an old token).
        """
        refuse = () if what is Request.DELETE else (GatewayPhase.DELETING, GatewayPhase.DELETED)
        for _attempt in range(attempts):
            current = self.require(gateway_id)
            if signal and what is Request.DELETE:
                refuse_stale_delete(current)
            state = check_request(what, current.state, current.phase)
            if state is GatewayState.DELETED and current.state is GatewayState.DELETED:
                return current, False  # Deleted is sticky: nothing new to write
            try:
                updated = self.set_state(
                    gateway_id, state, expected=current.state, refuse_if_phase_in=refuse
                )
            except StateChangeRefused as exc:
                if exc.current_state == current.state.value:
                    raise RequestRefused(str(exc)) from exc  # the phase refused it
                continue  # the state changed under us: check the request again
            return updated, True
        raise RequestRefused(
            f"cannot {what.value} {gateway_id}: its state keeps changing; try again"
        )

    def set_state_if(
        self,
        gateway_id: str,
        state: GatewayState,
        *,
        expected: GatewayState | None = None,
        reason: str | None = None,
    ) -> bool:
        """Write the intent only while it is still `expected` (when given); whether it matched.

        So a workflow settling Restarting -> Running never overwrites a stop or a delete
        that a user asked for meanwhile. A `reason` lands as progress.lastError in the same
        write, so nobody sees the new state without it.
        """
        query: RawDoc = {"gatewayId": gateway_id}
        if expected is not None:
            query["state"] = GatewayState(expected).value
        to_set: RawDoc = {"state": GatewayState(state).value, "updatedAt": utcnow()}
        if reason is not None:
            to_set["progress.lastError"] = reason
        return self._update(query, {"$set": to_set})

    def complete_step(
        self,
        gateway_id: str,
        step: str,
        phase: GatewayPhase,
        *,
        expected: Collection[GatewayPhase],
        number: int | None = None,
        next_step: str | None = None,
    ) -> bool:
        """Record a step as completed, and the phase, in one conditional write; whether
        the phase was one of `expected` (if not, nothing is written: the step belongs to
        an operation that was preempted).

        The same write names the current step: `next_step` (number + 1) when given, else
        this one; what the step waited on is cleared.
        """
        now = utcnow()
        to_set: RawDoc = {
            "phase": GatewayPhase(phase).value,
            "updatedAt": now,
            "progress.step": next_step or step,
            "progress.waitingOn": None,
            "progress.updatedAt": now,
        }
        if number is not None:
            to_set["progress.stepNumber"] = number + 1 if next_step else number
        query: RawDoc = {
            "gatewayId": gateway_id,
            "phase": {"$in": [GatewayPhase(p).value for p in expected]},
        }
        update: RawDoc = {"$set": to_set, "$addToSet": {"progress.completed": step}}
        return self._update(query, update)

    def record_progress(
        self,
        gateway_id: str,
        *,
        operation: str | None = None,
        step: str | None = None,
        step_number: int | None = None,
        total_steps: int | None = None,
        completed: str | None = None,
        error: str | Unset | None = UNSET,
        waiting_on: str | Unset | None = UNSET,
        next_attempt_at: datetime | Unset | None = UNSET,
    ) -> bool:
        """Update the given progress fields (None for error/waiting_on/next_attempt_at
        clears them).

        Returns whether the gateway exists.
        """
        now = utcnow()
        fields: dict[str, Any] = {
            "operation": operation,
            "step": step,
            "stepNumber": step_number,
            "totalSteps": total_steps,
        }
        to_set: RawDoc = {f"progress.{k}": v for k, v in fields.items() if v is not None}
        if not isinstance(error, Unset):
            to_set["progress.lastError"] = error
        if not isinstance(waiting_on, Unset):
            to_set["progress.waitingOn"] = waiting_on
        if not isinstance(next_attempt_at, Unset):
            to_set["progress.nextAttemptAt"] = next_attempt_at
        to_set.update({"progress.updatedAt": now, "updatedAt": now})
        update: RawDoc = {"$set": to_set}
        if completed is not None:
            update["$addToSet"] = {"progress.completed": completed}
        return self._update({"gatewayId": gateway_id}, update)

    def begin(
        self,
        gateway_id: str,
        phase: GatewayPhase,
        *,
        state: GatewayState,
        from_phases: Collection[GatewayPhase],
        operation: str,
        total_steps: int,
    ) -> bool:
        """Start an operation's fresh progress record, only while the state is still
        `state` (the intent the operation was decided on); whether it was.

        The phase moves to `phase` in the same write when it is one of `from_phases`, and
        stays otherwise (a deletion of a gateway already at phase Deleted). `lastError` is
        kept: the reason the previous operation ended must stay readable meanwhile; so is
        `drift`, the drift check's record (a repair is itself an operation).
        """
        now = utcnow()
        progress = Progress(operation=operation, total_steps=total_steps, updated_at=now)
        fresh = progress.model_dump(by_alias=True, exclude={"last_error", "drift"})
        to_set: RawDoc = {f"progress.{key}": value for key, value in fresh.items()}
        to_set["updatedAt"] = now
        query: RawDoc = {"gatewayId": gateway_id, "state": GatewayState(state).value}
        phases = {"$in": [GatewayPhase(p).value for p in from_phases]}
        moved = {"$set": {**to_set, "phase": GatewayPhase(phase).value}}
        if self._update({**query, "phase": phases}, moved):
            return True
        return self._update(query, {"$set": to_set})

    def give_back(
        self, gateway_id: str, phase: GatewayPhase, state: GatewayState, reason: str
    ) -> bool:
        """Cancel a held deletion: the state back from Deleted to `state`, only while the
        phase is still `phase` (the deletion never began), with the cancellation recorded
        in the document; whether it was written."""
        now = utcnow()
        cancelled = CancelledDeletion(at=now, reason=reason, restored=state)
        note = f"deletion cancelled by the operator ({reason}): state back to {state.value}"
        query: RawDoc = {
            "gatewayId": gateway_id,
            "state": GatewayState.DELETED.value,
            "phase": GatewayPhase(phase).value,
        }
        to_set: RawDoc = {
            "state": GatewayState(state).value,
            "deletionCancelled": cancelled.model_dump(by_alias=True, mode="python"),
            "progress.lastError": note,
            "progress.waitingOn": None,
            "progress.updatedAt": now,
            "updatedAt": now,
        }
        return self._update(query, {"$set": to_set})

    def converged(self) -> list[ApiGateway]:
        """Every gateway at rest (Running/Started, Stopped/Stopped): what the drift check
        looks at. One exact range of the (state, phase) index per pair."""
        found: list[ApiGateway] = []
        for state, phase in CONVERGED:
            cursor = self._col.find({"state": state.value, "phase": phase.value})
            found += parse_all(ApiGateway, cursor, log_malformed)
        return found

    def record_drift_repair(self, gateway_id: str, problems: list[str]) -> bool:
        now = utcnow()
        return self._update(
            {"gatewayId": gateway_id},
            {
                "$set": {
                    "progress.drift.repairedAt": now,
                    "progress.drift.repaired": problems,
                    "updatedAt": now,
                },
                "$inc": {"progress.drift.repairs": 1},
            },
        )

    def adopt_orphan(self, gateway_id: str, region: str) -> bool:
        """A document for an orphan's leftovers, state Deleted, so the ordinary deletion
        removes them; False (nothing written) when a gateway of that id exists again."""
        doc = ApiGateway(
            gateway_id=gateway_id,
            region=region,
            resource_region=region,
            state=GatewayState.DELETED,
            phase=GatewayPhase.STOPPED,
        )
        doc.progress.last_error = "orphan: its ApiGateway document was gone; reaping"
        try:
            self._col.insert_one(doc.to_mongo())
        except DuplicateKeyError:
            return False
        return True

    def remove_deleted(self, gateway_id: str) -> bool:
        """Remove the document only while it is the one whose deletion finished (state
        and phase Deleted); whether it was removed.

        A gateway created again, or a document replaced, meanwhile is never removed by the
        retry of an earlier deletion.
        """
        query = {
            "gatewayId": gateway_id,
            "state": GatewayState.DELETED.value,
            "phase": GatewayPhase.DELETED.value,
        }
        return self._col.delete_one(query).deleted_count == 1

    def pin_region(self, gateway: ApiGateway) -> str:
        """The region where the gateway's resources live, fixed on first use (a gateway
        inserted by a raw write has none yet). A different `region` in the document is
        refused, the reason recorded in progress.lastError; the fixed region is returned.
        """
        gid = gateway.gateway_id
        if gateway.resource_region is None:
            self._col.update_one(
                {"gatewayId": gid, "resourceRegion": None},
                {"$set": {"resourceRegion": gateway.region}},
            )
            gateway = self.require(gid)
        placed = gateway.placed_region
        if gateway.region != placed:
            reason = (
                f"region change refused: gateway {gid!r} lives in region {placed!r}, fixed at "
                f"creation; region {gateway.region!r} is not applied and every action still "
                f"uses {placed!r}. Set region back to {placed!r}, or delete the gateway and "
                "create it anew in the other region."
            )
            if gateway.progress.last_error != reason:
                log.warning("%s", reason)
                self.record_progress(gid, error=reason)
        return placed

    def refuse(self, doc_id: object, reason: str) -> bool:
        """Record why a document is not acted on, in its own `progress.lastError`.

        Addressed by `_id`, as its gatewayId is what is wrong; written once (a sweep that
        meets it again changes nothing). Returns whether it was written now.
        """
        return refuse(self._col, doc_id, reason)

    def unconverged(self, limit: int = 1000) -> list[tuple[str, GatewayState, GatewayPhase]]:
        """(gatewayId, state, phase) of every gateway with work left to do.

        That is every pair the transition table does not answer with NONE: a phase that
        is not the target of the state, and also (Restarting, Started), which still owes
        its rolling update, and (Deleted, Deleted), whose document is still to be removed.
        One query per state, each an exact range of the (state, phase) index: not every
        server we run on plans an `$or` over an index. Deleted comes first, so however
        many other gateways are unconverged, a delete is never left behind the limit.
        """
        found: list[tuple[str, GatewayState, GatewayPhase]] = []
        for state in SWEEP_ORDER:
            if len(found) >= limit:
                break
            pending = [
                p.value for p in GatewayPhase if decide(state, p).action is not GatewayAction.NONE
            ]
            cursor = self._col.find(
                {"state": state.value, "phase": {"$in": pending}},
                {"_id": 1, "gatewayId": 1, "phase": 1},
            ).limit(limit - len(found))
            for raw in cursor:
                gateway_id = raw.get("gatewayId")
                if not isinstance(gateway_id, str) or not gateway_id:
                    log_malformed(
                        MalformedDocument(COLLECTION, raw.get("_id"), "gatewayId: missing")
                    )
                    continue
                try:
                    validate_gateway_id(gateway_id)
                except InvalidGatewayId as exc:
                    refuse(self._col, raw.get("_id"), refusal(exc))
                    continue
                found.append((gateway_id, state, GatewayPhase(raw["phase"])))
        return found

    # Defined last: below it, `list` in this class body would name the method.
    def list(
        self, limit: int = 1000, on_malformed: OnMalformed = log_malformed
    ) -> list[ApiGateway]:
        """Gateways in id order; malformed ones are skipped and passed to `on_malformed`."""
        cursor = self._col.find({}).sort("gatewayId", 1).limit(limit)
        return parse_all(ApiGateway, cursor, on_malformed)

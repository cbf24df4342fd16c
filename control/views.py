"""How the CLI shows gateways: rich renderables built from documents, never from secrets."""

from datetime import datetime
from typing import TYPE_CHECKING, Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from gatewayflow import links
from gatewayflow.domain.deletion_guard import held_by_guard, what_to_run
from gatewayflow.domain.documents import ApiGateway, Progress
from gatewayflow.domain.messages import Orphan, OrphanScan, ReapHold, ReapResult
from gatewayflow.domain.redaction import redact_uri
from gatewayflow.settings import Settings

if TYPE_CHECKING:  # not at run time: the inventory brings in the Kubernetes client
    from gatewayflow.inventory import Item, PlanStep

PHASE_STYLE = {
    "Started": "green",
    "Stopped": "yellow",
    "Deleted": "red",
    "Deleting": "red",
    "Creating": "cyan",
    "Starting": "cyan",
    "Stopping": "yellow",
    "Created": "cyan",
}


def step_text(p: Progress, idle: str = "") -> str:
    """The current step as "n/m name" (just the name when unnumbered)."""
    if not p.step:
        return idle
    return f"{p.step_number}/{p.total_steps} {p.step}" if p.step_number else p.step


def progress_line(gw: ApiGateway | None, gateway_id: str) -> Text:
    """One line per change while following an operation."""
    if gw is None:
        return Text.assemble(("  ✓ ", "green"), f"{gateway_id}: ApiGateway document removed")
    p = gw.progress
    step = f"step {step_text(p)}" if p.step else "waiting"
    text = Text.assemble(
        "  ",
        (f"{gw.state.value}/{gw.phase.value}", PHASE_STYLE.get(gw.phase.value, "")),
        f"  {p.operation or ''} {step}",
        f"  done: {', '.join(p.completed)}" if p.completed else "",
    )
    if p.waiting_on:
        text.append(f"  (waiting on {p.waiting_on})", style="dim")
    if p.last_error:
        text.append(f"\n    last error: {p.last_error}", style="red")
    if p.next_attempt_at:
        text.append(f"\n    {next_attempt(p.next_attempt_at)}", style="dim")
    return text


def next_attempt(when: datetime) -> str:
    """After a failure: when the workflow tries again, and how to make it try now."""
    return f"next attempt at {when:%Y-%m-%d %H:%M:%S} UTC, or at once on a new request"


def links_table(workflow_links: dict[str, str]) -> Table:
    """Workflow id -> its Temporal UI link, one row each."""
    table = Table("workflow", "Temporal UI", show_header=True, box=None)
    for wid, link in workflow_links.items():
        table.add_row(wid, Text(link, overflow="fold"))
    return table


def where_to_look(settings: Settings, gateway_id: str, link: str | None = None) -> Text:
    """The gateway's workflow in the UI (every workflow of it when no link is given) and
    its MongoDB document."""
    return Text.assemble(
        "Temporal UI: ",
        (link or links.gateway_link(settings, gateway_id), "link"),
        "\nMongo document: ",
        (f"db.ApiGateway.find({{gatewayId: '{gateway_id}'}})", "bold"),
        f"  (database {settings.db_name} at {redact_uri(settings.mongodb_uri)})",
    )


def status_table(gateways: list[ApiGateway]) -> Table:
    table = Table("gateway", "state", "phase", "operation", "step", "last error", "region")
    for gw in gateways:
        p = gw.progress
        held = held_by_guard(p.waiting_on)
        table.add_row(
            gw.gateway_id,
            gw.state.value,
            Text(gw.phase.value, style=PHASE_STYLE.get(gw.phase.value, "")),
            "delete" if held else p.operation or "",
            Text("held by the deletion guard", style="yellow") if held else step_text(p),
            Text(p.last_error or "", style="red"),
            gw.placed_region,
        )
    return table


def status_detail(
    gw: ApiGateway, workflow_links: dict[str, str], drift_checked_at: datetime | None = None
) -> RenderableType:
    p = gw.progress
    table = Table(show_header=False, box=None)
    table.add_row("gateway", gw.gateway_id)
    table.add_row("state", gw.state.value)
    table.add_row("phase", Text(gw.phase.value, style=PHASE_STYLE.get(gw.phase.value, "")))
    table.add_row("operation", p.operation or "-")
    table.add_row("current step", step_text(p, idle="-"))
    table.add_row("completed", ", ".join(p.completed) or "-")
    table.add_row("waiting on", p.waiting_on or "-")
    table.add_row("last error", Text(p.last_error or "-", style="red" if p.last_error else ""))
    table.add_row("drift check", drift_text(gw, drift_checked_at))
    if held_by_guard(p.waiting_on):
        table.add_row("deletion guard", Text("held: " + what_to_run(gw.placed_region), "yellow"))
    elif gw.deletion_cancelled is not None:
        cancelled = gw.deletion_cancelled
        table.add_row(
            "deletion guard",
            f"deletion cancelled at {cancelled.at.isoformat(timespec='seconds')} "
            f"({cancelled.reason}); intent given back: {cancelled.restored.value}",
        )
    if p.next_attempt_at:
        table.add_row("retry", next_attempt(p.next_attempt_at))
    region = gw.placed_region
    if gw.region != region:
        region += f" (change to {gw.region} refused: fixed at creation)"
    table.add_row("region", region)
    table.add_row("custom domain", gw.custom_domain or "-")
    table.add_row("updated", gw.updated_at.isoformat(timespec="seconds"))
    return Group(table, links_table(workflow_links))


def plan_table(gateway_id: str, steps: list["PlanStep"]) -> Table:
    table = Table(
        "step", "what", "kind", "namespace / db", "name", title=f"Deletion plan of {gateway_id}"
    )
    for step in steps:
        if not step.items:
            table.add_row(f"{step.number}. {step.name}", step.title, "(nothing)", "", "")
        for i, item in enumerate(step.items):
            head = (f"{step.number}. {step.name}", step.title) if i == 0 else ("", "")
            table.add_row(*head, item.kind, item.namespace or "", item.name)
    return table


def leftovers_table(found: dict[str, list["Item"]]) -> Table:
    table = Table("gateway", "where", "kind", "namespace / db", "name", title="Left behind")
    for gateway_id, items in found.items():
        for item in items:
            where = f"{item.where} ({item.region})" if item.region else item.where
            table.add_row(gateway_id, where, item.kind, item.namespace or "", item.name)
    return table


def drift_text(gw: ApiGateway, checked_at: datetime | None) -> str:
    """When the drift check last looked at the gateway's region (documents written before
    it kept that per gateway), and what it last repaired."""
    drift = gw.progress.drift
    checked_at = checked_at or drift.checked_at
    if checked_at is None:
        text = "not checked yet (GATEWAYFLOW_DRIFT_INTERVAL; only Started and Stopped gateways)"
    else:
        text = f"last checked {checked_at.isoformat(timespec='seconds')} (its region)"
    if drift.repaired_at is not None:
        text += (
            f"; {drift.repairs} repair(s), last {drift.repaired_at.isoformat(timespec='seconds')}: "
            + ", ".join(drift.repaired)
        )
    return text


def deletion_queue(regions: list[dict[str, Any]], limit: int) -> Text:
    """Per region: deletions running (holding a permit) and queued, in order."""
    lines = []
    for doc in regions:
        holders = list(doc.get("holders") or [])
        queue = list(doc.get("queue") or [])
        if not holders and not queue:
            continue
        line = f"deletions in region {doc['_id']}: {len(holders)} running, {len(queue)} queued"
        line += f" (limit {limit})"
        if queue:
            line += f"; next: {', '.join(queue[:5])}"
        lines.append(line)
    return Text("\n".join(lines) or "no deletion running or queued")


def deletion_guard_text(guards: list[dict[str, Any]]) -> Text | None:
    """Per region: the deletions the guard holds, and what an operator runs; None when it
    holds none."""
    lines = []
    for doc in guards:
        held = list(doc.get("held") or [])
        if not held:
            continue
        region = str(doc["_id"])
        since = min(entry["at"] for entry in held)
        lines.append(
            f"deletions held by the guard in region {region}: {len(held)} (since "
            f"{since:%Y-%m-%d %H:%M:%S} UTC); {what_to_run(region)}"
        )
    return Text("\n".join(lines)) if lines else None


def kinds_text(kinds: dict[str, int]) -> str:
    """Kinds with their counts, e.g. `Namespace, ApisixRoute x6` (`audit` lists each item)."""
    return ", ".join(f"{kind} x{n}" if n > 1 else kind for kind, n in kinds.items())


def orphans_table(found: list[Orphan]) -> Table:
    table = Table("gateway", "region", "first seen", "due", "what", title="Orphans")
    for orphan in found:
        table.add_row(
            orphan.gateway_id,
            orphan.region,
            orphan.first_seen or "not yet seen by the reaper",
            "yes" if orphan.due else "no",
            kinds_text(orphan.kinds),
        )
    return table


def reap_table(result: ReapResult) -> Table:
    table = Table("gateway", "outcome", "what", title="Reaper")
    for orphan in result.reaped:
        table.add_row(orphan.gateway_id, Text("reaping", style="green"), kinds_text(orphan.kinds))
    for orphan in result.waiting:
        table.add_row(
            orphan.gateway_id, "waiting for the grace period", f"since {orphan.first_seen}"
        )
    for skipped in result.skipped:
        gid, _, why = skipped.partition(": ")
        table.add_row(gid, Text("skipped", style="yellow"), why)
    for orphan in result.held:
        table.add_row(orphan.gateway_id, Text("held", style="yellow"), kinds_text(orphan.kinds))
    return table


def reap_command(grace: float, gateway_ids: list[str], confirm: int | None = None) -> str:
    """The `gatewayflow reap --apply` that runs what the dry run showed."""
    words = ["gatewayflow reap --apply"]
    words += [] if confirm is None else [f"--confirm {confirm}"]
    words += [f"--grace {grace:g}"] if grace else []
    words += [f"--gateway {gid}" for gid in gateway_ids]
    return " ".join(words)


def hold_text(hold: ReapHold, grace: float, gateway_ids: list[str]) -> str:
    """Why a run adopts nothing, and the command that takes it through where one can."""
    text = f"held ({hold.kind}): {hold.reason}"
    if hold.confirmable and hold.would_adopt:
        confirm = reap_command(grace, gateway_ids, hold.would_adopt)
        text += f". If these {hold.would_adopt} are orphans: `{confirm}`"
    return text


def reap_preview_text(run: OrphanScan, grace: float, gateway_ids: list[str]) -> str:
    """What `gatewayflow reap --apply` (with these options) would do now."""
    command = f"`{reap_command(grace, gateway_ids)}`"
    if run.hold is not None:
        return f"{command} would adopt nothing: {hold_text(run.hold, grace, gateway_ids)}"
    return f"{command} would adopt {len(run.due)} now."

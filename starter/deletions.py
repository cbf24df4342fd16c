"""`gatewayflow deletions release|cancel`: an operator's answer to the deletion guard."""

import asyncio
from typing import Annotated

import typer

from control import service
from gatewayflow.settings import load_settings
from starter.output import console

Region = Annotated[str, typer.Option("--region", help="The region whose held deletions to act on.")]

deletions = typer.Typer(
    no_args_is_help=True,
    help="Deletions the deletion guard holds (see `gatewayflow status`): release or cancel them.",
)


def register(app: typer.Typer) -> None:
    app.add_typer(deletions, name="deletions")


@deletions.command()
def release(region: Region) -> None:
    """Let every deletion held in the region proceed, still under the region's deletion
    limit (GATEWAYFLOW_REGION_DELETION_LIMIT)."""
    outcome = asyncio.run(service.release_deletions(load_settings(), region))
    if not outcome.gateway_ids:
        console.print(f"no deletion held in region {region}")
        return
    console.print(
        f"released {len(outcome.gateway_ids)} held deletion(s) in region {region}: "
        + ", ".join(outcome.gateway_ids),
        soft_wrap=True,
    )
    _unsignalled(outcome)


@deletions.command()
def cancel(
    region: Region,
    reason: Annotated[
        str, typer.Option(help="Why, recorded in each gateway's document and workflow.")
    ] = "cancelled by an operator",
) -> None:
    """Cancel every deletion held in the region: each gateway gets back the intent it had
    (Running if it was started, Stopped otherwise). Nothing of them was deleted."""
    outcome = asyncio.run(service.cancel_deletions(load_settings(), region, reason))
    if not outcome.gateway_ids:
        console.print(f"no deletion held in region {region}")
        return
    console.print(f"cancelled {len(outcome.gateway_ids)} held deletion(s) in region {region}:")
    for gid, state in outcome.restored.items():
        given = f"state -> {state.value}" if state is not None else "not given back yet"
        console.print(f"  {gid}: {given}")
    _unsignalled(outcome)


def _unsignalled(outcome: service.GuardOutcome) -> None:
    if outcome.unsignalled:
        console.print(
            f"{len(outcome.unsignalled)} workflow(s) not running: the dispatcher's sweep "
            "starts them, and each finds the verdict (see `gatewayflow status`)",
            soft_wrap=True,
        )

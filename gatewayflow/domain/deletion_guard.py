"""What the deletion guard says, the same wherever it is said: in a held gateway's
progress, in its workflow's details, by `gatewayflow delete` and `gatewayflow status`."""

_HELD = "the deletion guard of region "


def release_command(region: str) -> str:
    return f"gatewayflow deletions release --region {region}"


def cancel_command(region: str) -> str:
    return f"gatewayflow deletions cancel --region {region}"


def what_to_run(region: str) -> str:
    return (
        f"`{release_command(region)}` lets the held deletions proceed, "
        f"`{cancel_command(region)}` gives each its intent back"
    )


def held_text(region: str, held: int, recent: int, window: float) -> str:
    """Why a deletion waits, and what an operator runs."""
    return (
        f"{_HELD}{region}: {held} deletion(s) held, {recent} admitted "
        f"in the last {window:g}s; {what_to_run(region)}"
    )


def held_by_guard(waiting_on: str | None) -> bool:
    """Whether a gateway's `progress.waitingOn` says the guard holds its deletion."""
    return bool(waiting_on) and str(waiting_on).startswith(_HELD)

"""The reaper's blast-radius limits on the embedded stack: a reaper whose database is empty
(a mistyped GATEWAYFLOW_DB) or unreachable adopts nothing, a run that would adopt more than
the limit holds, and an operator takes a held run through by confirming its size."""

import asyncio
import re
import time
from pathlib import Path
from urllib.parse import unquote

from temporalio.testing import ActivityEnvironment

from activities.reaper import ReaperActivities
from control import service
from gatewayflow.deps import Deps
from gatewayflow.domain.messages import HoldKind, Orphan, ReapInput
from gatewayflow.domain.states import GatewayPhase, GatewayState
from gatewayflow.reap_limits import Census, hold_for
from gatewayflow.settings import Settings
from tests.conftest import free_ports
from tests.gateway_harness import Harness, harness, unique_id
from tests.test_cli import run
from tests.test_metrics import samples, scrape
from tests.test_reaper import kube_emulator, owned
from tests.test_requests import current_details

LOOK = 5.0  # seconds a gateway must stay whole after a run that adopted nothing


async def kept(h: Harness, gid: str) -> set[str]:
    """What the gateway owns anywhere (a reaper's sightings of it are not its own)."""
    return {item for item in await owned(h, gid) if ".OrphanSighting:" not in item}


async def whole(h: Harness, gids: list[str], before: dict[str, set[str]]) -> list[str]:
    """The gateways whose document, phase or objects changed since `before`."""
    changed = []
    for gid in gids:
        gw = await asyncio.to_thread(h.gateways.get, gid)
        moved = gw is not None and gw.phase is not GatewayPhase.STARTED
        if moved or await kept(h, gid) != before[gid]:  # `kept` holds the document too
            changed.append(gid)
    return changed


async def stays_whole(h: Harness, gids: list[str], before: dict[str, set[str]]) -> list[str]:
    """The gateways that changed at any moment of the next LOOK seconds."""
    deadline = time.monotonic() + LOOK
    while time.monotonic() < deadline:
        if changed := await whole(h, gids, before):
            return changed
        await asyncio.sleep(0.25)
    return []


def held_runs(port: int) -> float:
    """The worker's count of reaper runs held because the collection was empty."""
    key = ("gatewayflow_reaper_held_total", frozenset({("reason", "empty")}))
    return samples(scrape(port)).get(key, 0.0)


async def running(h: Harness, count: int, prefix: str) -> tuple[list[str], dict[str, set[str]]]:
    gids = [unique_id(prefix) for _ in range(count)]
    await asyncio.gather(*(h.create(gid) for gid in gids))
    await asyncio.gather(*(h.wait_for(gid, GatewayState.RUNNING) for gid in gids))
    return gids, {gid: await kept(h, gid) for gid in gids}


async def test_a_reaper_on_an_empty_database_adopts_nothing(
    stack: Settings, tmp_path: Path
) -> None:
    """The installation's database emptied (restored from an empty backup, a collection
    dropped by mistake) while its gateways' objects live on: every gateway looks like an
    orphan, and `reap --apply --grace 0` must adopt none of them, and say why. (A mistyped
    GATEWAYFLOW_DB is another installation, which sees none of them: test_installations.)"""
    port = free_ports(1)[0]
    with kube_emulator(tmp_path) as kubeconfig:
        async with harness(stack, kubeconfig=kubeconfig, metrics_port=port) as a:
            live, _ = await running(a, 2, "live")
            await asyncio.to_thread(a.deps.db["ApiGateway"].delete_many, {})
            before = {gid: await kept(a, gid) for gid in live}
            held_before = held_runs(port)
            links: list[str] = []
            result = await service.reap_orphans(a.settings, 0.0, on_start=links.append)
            destroyed = await stays_whole(a, live, before)
            assert not destroyed, f"a reaper of an empty database took {destroyed}: {result}"

            assert result.reaped == []
            assert result.hold is not None and result.hold.kind is HoldKind.EMPTY
            assert sorted(o.gateway_id for o in result.held) == sorted(live)
            assert a.settings.db_name in result.hold.reason
            assert held_runs(port) == held_before + 1
            [wid] = re.findall(r'WorkflowId="([^"]+)"', unquote(links[0]))
            details = await current_details(a.client.get_workflow_handle(wid), "held")
            assert "**held** (empty), adopted nothing: the gateways collection" in details

            # A confirmation of the wrong size changes nothing.
            wrong = await service.reap_orphans(a.settings, 0.0, confirm=1)
            assert wrong.reaped == [] and wrong.hold is not None
            assert "confirmed 1" in wrong.hold.reason
            assert not await stays_whole(a, live, before)

            dry = await run(a.settings, "reap")
            assert dry.returncode == 0, dry.stdout + dry.stderr
            assert "would adopt nothing" in dry.stdout and "is empty" in dry.stdout
            assert "gatewayflow reap --apply --confirm 2" in dry.stdout
            applied = await run(a.settings, "reap", "--apply")
            assert applied.returncode == 1, applied.stdout + applied.stderr
            assert "adopted nothing" in applied.stdout
            assert not await stays_whole(a, live, before)


async def test_a_run_over_the_limit_holds_until_confirmed(stack: Settings, tmp_path: Path) -> None:
    """Three documents deleted by hand at once, with a limit of two: the run holds, a
    confirmation of another size holds again, and `--confirm 3` reaps exactly those."""
    with kube_emulator(tmp_path) as kubeconfig:
        async with harness(stack, kubeconfig=kubeconfig, reap_max=2, reap_max_share=1.0) as h:
            gids, before = await running(h, 4, "many")
            kept, orphaned = gids[:1], gids[1:]
            h.deps.db["ApiGateway"].delete_many({"gatewayId": {"$in": orphaned}})

            result = await service.reap_orphans(h.settings, 0.0)
            left = [gid for gid in orphaned if f"Namespace gw-{gid}" not in await owned(h, gid)]
            assert result.reaped == [] and not left, f"a run over the limit took: {result}"
            assert result.hold is not None and result.hold.kind is HoldKind.LIMIT
            assert sorted(o.gateway_id for o in result.held) == sorted(orphaned)
            assert "3 of the 4 gateways of region local" in result.hold.reason

            dry = await run(h.settings, "reap")
            assert "held" in dry.stdout and "gatewayflow reap --apply --confirm 3" in dry.stdout

            wrong = await run(h.settings, "reap", "--apply", "--confirm", "2")
            assert wrong.returncode == 1 and "confirmed 2" in wrong.stdout, wrong.stdout

            confirmed = await run(h.settings, "reap", "--apply", "--confirm", "3")
            assert confirmed.returncode == 0, confirmed.stdout + confirmed.stderr
            async with asyncio.timeout(90):
                while any([await owned(h, gid) for gid in orphaned]):
                    await asyncio.sleep(0.5)
            assert not await whole(h, kept, before)


async def test_an_unreachable_gateways_collection_refuses_the_run(stack: Settings) -> None:
    """The reaper's own scan (the activity, on a real MongoDB address where nothing
    answers): no orphan is listed, let alone adopted, and the reason says why."""
    nowhere = stack.model_copy(
        update={"mongodb_uri": f"mongodb://127.0.0.1:{free_ports(1)[0]}/?directConnection=true"}
    )
    scan = await asyncio.to_thread(
        ActivityEnvironment().run, ReaperActivities(Deps(nowhere)).find_orphans, ReapInput()
    )
    assert scan.due == [] and scan.hold is not None
    assert scan.hold.kind is HoldKind.UNREACHABLE
    assert "cannot be read" in scan.hold.reason


def test_the_limits_count_per_region_and_a_share_of_the_gateways_seen() -> None:
    settings = Settings.model_construct()  # the defaults: 5 per region, 10 % of a region
    one, two = orphans("local", 1), orphans("local", 2)
    assert hold_for(one, census(2, local=3), settings, None) is None  # one is always allowed
    assert hold_for(two, census(18, local=20), settings, None) is None  # 2 of 20: 10 %
    held = hold_for(two, census(17, local=19), settings, None)
    assert held is not None and held.kind is HoldKind.LIMIT and held.would_adopt == 2
    assert hold_for(two, census(17, local=19), settings, 2) is None  # confirmed: through
    unconfirmed = hold_for(two, census(17, local=19), settings, 3)
    assert unconfirmed is not None and unconfirmed.kind is HoldKind.UNCONFIRMED
    six = orphans("local", 6)
    held = hold_for(six, census(994, local=1000), settings, None)
    assert held is not None and "GATEWAYFLOW_REAP_MAX (5)" in held.reason
    assert hold_for(orphans("a", 5), census(95, a=100), settings, None) is None
    # Per region: 2 of 20 in each of two regions is within both.
    spread = orphans("a", 2) + orphans("b", 2)
    assert hold_for(spread, census(36, a=20, b=20), settings, None) is None
    # The orphans count among the region's gateways even where nothing else lists them.
    held = hold_for(orphans("c", 3), census(50, a=50), settings, None)
    assert held is not None and "3 of the 3 gateways of region c" in held.reason
    # No document at all while labelled objects exist: every gateway looks orphaned.
    empty = hold_for(one, census(0, local=1), settings, None)
    assert empty is not None and empty.kind is HoldKind.EMPTY
    assert hold_for(one, census(0, local=1), settings, 1) is None


def orphans(region: str, count: int) -> list[Orphan]:
    return [Orphan(gateway_id=f"{region}-{n}", region=region, due=True) for n in range(count)]


def census(documents: int, **regions: int) -> Census:
    return Census(
        documents=documents,
        gateways={r: {f"{r}-{n}" for n in range(count)} for r, count in regions.items()},
    )

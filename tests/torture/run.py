"""Runs the torture machine for a while on a stack of its own and reports the figures."""

import random
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, Phase, Verbosity, seed, settings
from hypothesis.stateful import run_state_machine_as_test

from tests.torture.checks import INVARIANTS
from tests.torture.machine import TimeUp, TortureMachine
from tests.torture.world import PROCESS_KINDS, World, results_json, write_results

REPO = Path(__file__).resolve().parents[2]
RESULTS = REPO / "torture" / "results" / "latest.json"
EPISODES_PER_SEED = 9


def run(
    seconds: float,
    run_seed: int,
    *,
    steps: int = 30,
    results: Path | None = RESULTS,
    out: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Episodes of at most `steps` rules until `seconds` have passed; then the report.

    A violation ends the run: Hypothesis shrinks the failing episode (replaying it against
    the stack) and prints the shortest sequence of rules that still fails.
    """
    out(f"torture: seed {run_seed}, {seconds:.0f}s, up to {steps} rules per episode")
    with tempfile.TemporaryDirectory(prefix="torture-") as home:
        world = World(Path(home))
        world.seed = run_seed
        started = time.monotonic()
        world.start()
        out(f"torture: stack up in {time.monotonic() - started:.1f}s (logs in {world.logs})")
        world.deadline = time.monotonic() + seconds
        TortureMachine.world = world
        failure: BaseException | None = None
        try:
            chunk = 0
            while world.time_left() > 0 and failure is None:
                failure = _chunk(world, run_seed * 1000 + chunk, steps, out)
                chunk += 1
        finally:
            elapsed = time.monotonic() - started
            world.stop()
    figures = results_json(world.counts, run_seed, elapsed)
    figures["passed"] = failure is None and not world.counts.first_failure
    if results is not None:
        write_results(results, figures)
    out(table(figures))
    if results is not None:
        out(f"figures written to {results}")
    if failure is not None:
        out(f"torture FAILED (seed {run_seed}): {failure}")
        out("Paste the steps printed above into a regression test (tests/test_torture.py).")
    return figures


def _chunk(
    world: World, chunk_seed: int, steps: int, out: Callable[[str], None]
) -> BaseException | None:
    """A few episodes from one seed; the failure, once shrunk, if one fails.

    Fewer than ten examples per call: Hypothesis draws its first tenth of the examples
    small (the simplest extension of a prefix), and an episode on a real stack is too
    dear to spend that way; so each call runs one simplest episode, then random ones.
    """
    config = settings(
        max_examples=EPISODES_PER_SEED,
        stateful_step_count=steps,
        deadline=None,
        database=None,
        phases=[Phase.generate, Phase.shrink],
        suppress_health_check=list(HealthCheck),
        report_multiple_bugs=False,
        verbosity=Verbosity.normal,
    )
    world.say(f"hypothesis seed {chunk_seed}")
    try:
        run_state_machine_as_test(seed(chunk_seed)(TortureMachine), settings=config)
    except TimeUp:
        pass
    except Exception as exc:  # the shrunk failure: Hypothesis printed its rules
        # Hypothesis may call an episode cut short by the time limit inconsistent
        # (it drew nothing): that is the run's normal end, not a failure.
        if not (world.timed_out and not world.counts.first_failure):
            out(f"hypothesis seed of the failing episode: {chunk_seed}")
            return exc
    return None


def table(figures: dict[str, Any]) -> str:
    rows = [
        ("seed", figures["seed"]),
        ("seconds", figures["seconds"]),
        ("episodes", figures["episodes"]),
        ("rules run", figures["rules"]),
        ("deletions", figures["deletions"]),
        ("orphans reaped", figures["reaped"]),
        *((f"SIGKILL {kind}", figures["kills"].get(kind, 0)) for kind in PROCESS_KINDS),
        *((f"faults fired: {k}", v) for k, v in figures["faults"].items()),
        *((f"violations: {name}", figures["violations"].get(name, 0)) for name in INVARIANTS),
    ]
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


def seed_from(text: str | None) -> int:
    return int(text) if text else random.SystemRandom().randrange(2**31)

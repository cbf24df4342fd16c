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
from tests.torture.machine import RunOver, TortureMachine
from tests.torture.world import PROCESS_KINDS, World, results_json, write_results

REPO = Path(__file__).resolve().parents[2]
RESULTS = REPO / "torture" / "results" / "latest.json"
EPISODES_PER_SEED = 9
SHRINK_SECONDS = 1800.0
"""How long a failure's shrinking may go on, from the failure (past the run's time)."""


def run(
    seconds: float,
    run_seed: int,
    *,
    steps: int = 30,
    episodes: int | None = None,
    shrink_seconds: float = SHRINK_SECONDS,
    results: Path | None = RESULTS,
    out: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Episodes of at most `steps` rules until `seconds` have passed (or `episodes` have
    run); then the report.

    A violation ends the run: Hypothesis shrinks the failing episode (replaying it against
    the stack) for at most `shrink_seconds` more and prints the shortest sequence of rules
    that still fails. The run has failed whether or not its shrinking finished.
    """
    bound = f"{episodes} episodes" if episodes is not None else f"{seconds:.0f}s"
    out(f"torture: seed {run_seed}, {bound}, up to {steps} rules per episode")
    out(f"torture: to repeat it: {repeat(run_seed, seconds, steps, episodes)}")
    with tempfile.TemporaryDirectory(prefix="torture-") as home:
        world = World(Path(home))
        world.seed = run_seed
        started = time.monotonic()
        world.start()
        out(f"torture: stack up in {time.monotonic() - started:.1f}s (logs in {world.logs})")
        world.deadline = time.monotonic() + seconds
        world.max_episodes = episodes
        world.shrink_seconds = shrink_seconds
        TortureMachine.world = world
        failure: BaseException | None = None
        try:
            chunk = 0
            while not world.over() and failure is None:
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
    for number, ran in enumerate(world.counts.rules_by_episode, 1):
        out(f"episode {number}: {', '.join(ran)}")
    if results is not None:
        out(f"figures written to {results}")
    if not figures["passed"]:
        first = world.counts.first_failure
        out(f"torture FAILED (seed {run_seed}): {first[0] if first else failure}")
        out(f"to repeat it: {repeat(run_seed, seconds, steps, episodes)}")
        out("Paste the steps printed above into a regression test (tests/test_torture.py).")
    return figures


def repeat(run_seed: int, seconds: float, steps: int, episodes: int | None) -> str:
    """The command that draws the same episodes again (the seed decides every draw)."""
    bound = (
        f"TORTURE_EPISODES={episodes}" if episodes is not None else f"TORTURE_SECONDS={seconds:.0f}"
    )
    return f"TORTURE_SEED={run_seed} {bound} TORTURE_STEPS={steps} make torture"


def _chunk(
    world: World, chunk_seed: int, steps: int, out: Callable[[str], None]
) -> BaseException | None:
    """A few episodes from one seed; the failure, once shrunk (or its shrinking over),
    if one fails.

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
    except RunOver as over:
        if world.counts.first_failure:
            out("torture: the shrinking ran out of time; the failure as first seen is below")
            return over
    except Exception as exc:  # the shrunk failure: Hypothesis printed its rules
        # Hypothesis may call an episode refused at the end inconsistent (it drew
        # nothing): the run's normal end, when nothing failed.
        if world.counts.first_failure or not world.ended:
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

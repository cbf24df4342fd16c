"""`python -m tests.torture`: TORTURE_SECONDS (default 1800), TORTURE_SEED (default random,
printed), TORTURE_STEPS (rules per episode, default 30) and TORTURE_EPISODES (a number of
episodes instead of a time) from the environment; exit 1 on a violation."""

import os
import sys

from tests.torture.run import run, seed_from


def main() -> None:
    seconds = float(os.environ.get("TORTURE_SECONDS", "1800"))
    episodes = os.environ.get("TORTURE_EPISODES")
    figures = run(
        float("inf") if episodes else seconds,
        seed_from(os.environ.get("TORTURE_SEED")),
        steps=int(os.environ.get("TORTURE_STEPS", "30")),
        episodes=int(episodes) if episodes else None,
    )
    sys.exit(0 if figures["passed"] else 1)


if __name__ == "__main__":
    main()

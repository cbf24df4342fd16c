"""`python -m tests.torture`: TORTURE_SECONDS (default 1800) and TORTURE_SEED (default
random, printed) from the environment; exit 1 on a violation."""

import os
import sys

from tests.torture.run import run, seed_from


def main() -> None:
    seconds = float(os.environ.get("TORTURE_SECONDS", "1800"))
    figures = run(seconds, seed_from(os.environ.get("TORTURE_SEED")))
    sys.exit(0 if figures["passed"] else 1)


if __name__ == "__main__":
    main()

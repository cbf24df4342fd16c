"""The short torture run of `make test`: the state machine of tests/torture on a stack of
its own, for about two minutes from a fixed seed, with zero violations.

`make torture` runs it for longer (TORTURE_SECONDS) from any seed (TORTURE_SEED).
"""

import pytest

from tests.torture.run import run

SHORT_SECONDS = 100.0
SHORT_SEED = 14


@pytest.mark.timeout(1200)  # a failure is shrunk by replaying episodes on the stack
def test_short_seeded_torture_run() -> None:
    figures = run(SHORT_SECONDS, SHORT_SEED, steps=15, results=None)
    assert figures["passed"], figures["first_failure"]
    assert figures["violations"] == {}
    assert figures["deletions"] >= 1

"""The torture run: a randomized, model-based test of the whole system (issue 14).

`python -m tests.torture` (or `make torture`) runs it for TORTURE_SECONDS with
TORTURE_SEED; tests/test_torture.py runs a short seeded one inside `make test`.
"""

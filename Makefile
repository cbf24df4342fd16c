# Two commands from a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint types unit bench torture clean

$(STAMP): pyproject.toml devstack/pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]' -e ./devstack
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/gatewayflow demo

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/mypy .
	$(BIN)/pytest -q -n 3

bench: $(STAMP)
	$(BIN)/python -m bench

# The long torture run (tests/torture): TORTURE_SECONDS (default 1800), TORTURE_SEED.
torture: $(STAMP)
	$(BIN)/python -m tests.torture

clean:
	rm -rf $(VENV) .gatewayflow build *.egg-info

# Two entry points for a fresh Debian machine with Python 3.11: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
PKGS   := relay hsm_adapter loadgen

.PHONY: demo test lint typecheck pytest bench-replay bench-replay-trio bench-period setup clean

setup: $(STAMP)

# The venv is rebuilt only when pyproject.toml changes. Debian splits venv/ensurepip
# into python3-venv; install it when missing (we run as root there).
$(STAMP): pyproject.toml
	@$(PYTHON) -m venv $(VENV) 2>/dev/null || { \
	  echo "python venv module missing: installing python3-venv"; \
	  apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null && $(PYTHON) -m venv $(VENV); }
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev,bench]'
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/relaysim replay configs/2016-03-29.yaml --design fixed

lint: $(STAMP)
	$(BIN)/ruff check $(PKGS) tests bench
	$(BIN)/ruff format --check $(PKGS) tests bench

typecheck: $(STAMP)
	$(BIN)/mypy $(PKGS) tests

pytest: $(STAMP)
	$(BIN)/pytest -q

test: lint typecheck pytest

# The 29 March day on the fast engine, after the SimPy yardstick in ../shared.
bench-replay: $(STAMP)
	$(BIN)/python bench/replay_fast.py configs/2016-03-29.yaml

# The same day on the trio engine, against bare trio's own floor.
bench-replay-trio: $(STAMP)
	$(BIN)/python bench/replay_trio.py configs/2016-03-29.yaml

# 13 Jan to 19 Mar 2016 on legacy (issue 4: under 10 minutes), after the 29 March day.
bench-period: $(STAMP)
	$(BIN)/python bench/replay_period.py configs/jan-2016.yaml

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache

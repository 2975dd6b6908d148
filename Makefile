# Two commands on a fresh machine: `make demo` runs the main job, `make test` the tests.
# Both create .venv and install everything first (torch first: pinned to the CPU build).

VENV := .venv
BIN := $(VENV)/bin
SHARED_MASSIVE := $(abspath ../shared/data/amazon-massive-dataset-1.1.tar.gz)
export XLCL_MASSIVE ?= $(if $(wildcard $(SHARED_MASSIVE)),$(SHARED_MASSIVE),)

.PHONY: demo test lint setup chromium wheel-test

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

demo: setup
	$(BIN)/xlcl demo

lint: setup
	$(BIN)/ruff check src tests bench examples
	$(BIN)/ruff format --check src tests bench examples
	$(BIN)/mypy

# The HTML report's test drives Debian's Chromium (never a downloaded browser build).
chromium:
	command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium >/dev/null)

test: lint chromium
	$(BIN)/pytest

# The wheel as a user gets it: built, installed with its demo extra into a fresh virtualenv
# outside the checkout, and `xlcl demo --quick` run in an empty directory (.ci/wheel-test).
wheel-test: setup
	.ci/wheel-test $(BIN)/python

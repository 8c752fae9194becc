# selfprog: two commands do all the set-up on a fresh machine.
#   make evolve   evolve programs/codelm on the embedded defaults (engine, images, venv included)
#   make test     ruff + pytest against a real Docker engine (started here if none answers)
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH_VERSION ?= 2.13.0
CONFIG ?=
PYTEST_ARGS ?=
GPU ?=

.PHONY: evolve test venv engine images browser lint schema benchmarks clean help

help:
	@echo "make evolve   run the main job: evolve programs/codelm (default config)"
	@echo "make test     lint and run the test suite against a real Docker engine"
	@echo "make images   build the runtime image(s); unchanged images are not rebuilt"
	@echo "make engine   make sure a Docker engine answers (installs docker.io as root on Debian)"

# The virtual environment is rebuilt when pyproject.toml changes. torch is installed first and
# pinned: a range would pull a multi-GB CUDA build where a CPU wheel is at hand.
$(BIN)/.installed: pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "selfprog needs Python 3.11 or newer: set PYTHON=python3.11")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "torch==$(TORCH_VERSION)"
	$(BIN)/python -m pip install -q -e ".[dev]"
	@touch $@

venv: $(BIN)/.installed

engine: venv
	$(BIN)/selfprog engine

images: engine
	$(BIN)/selfprog images $(if $(GPU),--gpu,)

# The report's browser tests render it in Debian's headless chromium. Installed here when missing
# (as root, like the engine); when it cannot be, make goes on and those tests fail, naming it.
browser:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && apt-get update -q && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; } || \
		echo "warning: chromium is missing and could not be installed: the report's browser tests will fail" >&2

schema: venv
	$(BIN)/selfprog protocol schema > sandbox/protocol.schema.json

lint: venv
	$(BIN)/ruff check .
	$(BIN)/mypy

# Two workers: the Docker tests in one, in order (see tests/conftest.py), the rest beside them.
test: images lint browser
	$(BIN)/python -m pytest -n 2 --dist loadgroup $(PYTEST_ARGS)

evolve: images
	$(BIN)/selfprog evolve $(CONFIG)

benchmarks: images
	$(BIN)/python benchmarks/overhead.py

clean:
	rm -rf $(VENV) build .pytest_cache .ruff_cache

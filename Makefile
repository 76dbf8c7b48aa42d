# DreamStream: `make run` runs the app, `make test` runs the tests. Both set up what they need first.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# JAX's CUDA build (the `cuda` extra): `auto` installs it when an NVIDIA GPU answers `nvidia-smi -L`; 1 always, 0 never.
# Recursive (=): nvidia-smi runs only when the setup recipe needs the answer, with a time limit.
CUDA ?= auto
comma := ,
WITH_CUDA = $(if $(filter 1,$(CUDA)),1,$(if $(filter auto,$(CUDA)),$(shell timeout 10 nvidia-smi -L >/dev/null 2>&1 && echo 1),))
EXTRAS = dev$(if $(WITH_CUDA),$(comma)cuda,)
# Holds the extras installed; setup installs again when pyproject.toml is newer or other extras are asked for (with
# CUDA=auto, a CUDA install stays good while nvidia-smi fails for a while, e.g. during a driver upgrade).
STAMP := $(VENV)/.dreamstream-installed
LOGDIR ?= runs/default
ARGS ?=
PYTEST_ARGS ?=
TESTS ?=
TEST_WORKERS ?= 2
# `make test` runs in two phases: the compile-bound tests (XLA compiling tiny agents) on TEST_WORKERS workers
# (pytest-xdist), then the tests that time real streams, browsers and processes one at a time. TESTS=... runs just
# those paths (one phase); PYTEST_ARGS go to every pytest run.
PARALLEL_TESTS := tests/unit tests/integration/test_multi_process.py tests/integration/test_cli_commands.py
# System parts: encoder, virtual display and input tools, chess engine and GUI, RTMP server, browser, fonts.
APT_PACKAGES := python3 python3-venv python3-dev ffmpeg xvfb x11-utils xdotool stockfish xboard polyglot \
	nginx libnginx-mod-rtmp chromium chromium-driver fonts-dejavu-core libcairo2 libegl1 libegl-mesa0 \
	libgl1-mesa-dri libosmesa6 xauth obs-studio

.PHONY: help setup system-packages python-packages run test lint bench clean-venv

help:
	@echo "make run    - set up, then run DreamStream (logdir $(LOGDIR); extra options via ARGS=...)"
	@echo "make test   - set up, then run the test suite"
	@echo "make setup  - install system packages (apt) and the Python environment; idempotent"
	@echo "make lint   - ruff"

setup: system-packages python-packages

system-packages:
	@missing=""; for p in $(APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -z "$$missing" ]; then echo "setup: system packages present"; exit 0; fi; \
	echo "setup: installing system packages:$$missing"; \
	if [ "$$(id -u)" != 0 ]; then SUDO=sudo; else SUDO=""; fi; \
	$$SUDO apt-get update -q && \
	DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q --no-install-recommends $$missing

python-packages:
	@extras='$(EXTRAS)'; have="$$(cat $(STAMP) 2>/dev/null)"; \
	if [ -x $(BIN)/python ] && [ $(STAMP) -nt pyproject.toml ] && { [ "$$have" = "$$extras" ] || \
	     { [ "$(CUDA)" = auto ] && [ "$$have" = "dev,cuda" ]; }; }; then \
	  echo "setup: python environment present (dreamstream[$$have])"; exit 0; fi; \
	if [ ! -x $(BIN)/python ]; then echo "setup: creating $(VENV) with $$($(PYTHON) --version)"; \
	  $(PYTHON) -m venv $(VENV) || exit 1; fi; \
	$(BIN)/python -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
	  { echo "setup: DreamStream needs Python >= 3.11; set PYTHON=python3.11"; exit 1; }; \
	echo "setup: installing dreamstream[$$extras] into $(VENV) (first time: a few minutes)"; \
	$(BIN)/python -m pip install -q --upgrade pip && \
	$(BIN)/python -m pip install -q -e ".[$$extras]" && \
	echo "$$extras" > $(STAMP) && echo "setup: python environment ready"

run: setup
	$(BIN)/dreamstream run --logdir $(LOGDIR) $(ARGS)

test: setup
	@if [ -n "$(TESTS)" ]; then set -x; exec $(BIN)/python -m pytest $(PYTEST_ARGS) $(TESTS); fi; \
	rc=0; set -x; \
	$(BIN)/python -m pytest -n $(TEST_WORKERS) $(PYTEST_ARGS) $(PARALLEL_TESTS) || rc=$$?; \
	$(BIN)/python -m pytest $(PYTEST_ARGS) tests/integration $(patsubst %,--ignore=%,$(filter tests/integration/%,$(PARALLEL_TESTS))) || rc=$$?; \
	exit $$rc

lint: setup
	$(BIN)/ruff check .

clean-venv:
	rm -rf $(VENV)

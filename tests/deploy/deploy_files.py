"""Readers for the deployment files, and the one question every test asks: does our CLI accept this container?

A container's command line is computed, not guessed: the image's real entrypoint script runs under ``sh`` with the
container's environment and a stub ``spatial-mllm-serve`` that reports the argv it was given; that argv and
environment then go through the server's own parser (``server.runtime.cli.build_parser``), vLLM's serve-argument
checks and
our settings' validation, exactly as ``spatial-mllm-serve`` would at start-up before loading anything.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from argparse import Namespace
from collections.abc import Mapping
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path += [str(ROOT / "deploy" / "validate"), str(ROOT / "deploy" / "docker")]  # appended: never shadow anything

ENTRYPOINT_SCRIPT = ROOT / "deploy" / "docker" / "entrypoint.sh"
K8S = ROOT / "deploy" / "kubernetes"


LIVENESS, READINESS = "/health", "/ready"


def probe_paths() -> set[str]:
    """The paths the server's probe routes answer on (server/api/health.py)."""
    from server.api.health import router

    return {route.path for route in router.routes}


# --- Dockerfile ---


def dockerfile_instructions(path: Path = ROOT / "Dockerfile") -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined and comments dropped."""
    instructions, current = [], ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        keyword, _, arguments = (current + line).partition(" ")
        instructions.append((keyword.upper(), arguments.strip()))
        current = ""
    return instructions


def final_stage(instructions: list[tuple[str, str]]) -> list[tuple[str, str]]:
    last_from = max(i for i, (keyword, _) in enumerate(instructions) if keyword == "FROM")
    return instructions[last_from:]


def key_values(arguments: str) -> dict[str, str]:
    """``ENV``/``ARG`` arguments in the ``KEY=value`` form (the legacy ``KEY value`` form is refused)."""
    pairs = shlex.split(arguments)
    if not all("=" in pair for pair in pairs):
        raise AssertionError(f"use KEY=value form: {arguments}")
    return dict(pair.split("=", 1) for pair in pairs)


def dockerfile_arg(name: str) -> str:
    """The default of a build argument."""
    values = [key_values(args) for keyword, args in dockerfile_instructions() if keyword == "ARG" and "=" in args]
    return next(value[name] for value in values if name in value)


def image_environment() -> dict[str, str]:
    env: dict[str, str] = {}
    for keyword, arguments in final_stage(dockerfile_instructions()):
        if keyword == "ENV":
            env.update(key_values(arguments))
    return env


def exec_form(keyword: str) -> list[str]:
    """The final stage's last ENTRYPOINT or CMD, which must be in JSON (exec) form."""
    arguments = [args for kw, args in final_stage(dockerfile_instructions()) if kw == keyword][-1]
    return json.loads(arguments)


def dockerignored(path: str, ignore_file: Path = ROOT / ".dockerignore") -> bool:
    """Docker's rule: the last pattern matching the path or one of its parent directories decides."""
    patterns = [line.strip() for line in ignore_file.read_text().splitlines()]
    excluded = False
    for pattern in (p for p in patterns if p and not p.startswith("#")):
        negated = pattern.startswith("!")
        pattern = pattern.lstrip("!").strip("/")
        parts = path.strip("/").split("/")
        if any(fnmatch("/".join(parts[:n]), pattern) for n in range(1, len(parts) + 1)):
            excluded = not negated
    return excluded


# --- the container's command line ---


def entrypoint_argv(command: list[str], environ: Mapping[str, str], tmp_path: Path) -> list[str]:
    """What the image's entrypoint script execs, given the command (CMD / compose command / k8s args)."""
    stub_dir = tmp_path / "stub-bin"
    stub_dir.mkdir(exist_ok=True)
    stub = stub_dir / "spatial-mllm-serve"
    stub.write_text(f"#!{sys.executable}\nimport json, sys\nprint(json.dumps(sys.argv[1:]))\n")
    stub.chmod(0o755)
    env = {**environ, "PATH": f"{stub_dir}{os.pathsep}/usr/bin{os.pathsep}/bin"}
    done = subprocess.run(["sh", str(ENTRYPOINT_SCRIPT), *command], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def parse_server_command(argv: list[str], environ: Mapping[str, str]) -> tuple[Namespace, Any]:
    """Parse as ``spatial-mllm-serve`` does before it loads anything; a refusal fails the test with the reason."""
    from vllm.entrypoints.launchers.cli_args import validate_parsed_serve_args

    from server.runtime.cli import build_parser, settings_from_args

    parser = build_parser(environ=environ)
    try:
        args = parser.parse_args(argv)
    except SystemExit:
        pytest.fail(f"spatial-mllm-serve refuses {argv} (see stderr)")
    if args.model_tag is not None:
        args.model = args.model_tag
    validate_parsed_serve_args(args)
    return args, settings_from_args(args)


# --- compose and Kubernetes ---


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def compose_with_override(base: dict[str, Any], override: Path) -> dict[str, Any]:
    """A Compose override file (``!override`` tags and all) merged over ``base`` as Compose merges it."""
    import compose_files

    return compose_files.merge(base, compose_files.load(override))


def env_file(path: Path) -> dict[str, str]:
    lines = [line.strip() for line in path.read_text().splitlines()]
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))


def find(documents: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    matches = [doc for doc in documents if doc["kind"] == kind and name in (None, doc["metadata"]["name"])]
    assert len(matches) == 1, f"expected one {kind} {name or ''}, found {len(matches)}"
    return matches[0]


def kustomizations() -> list[Path]:
    return sorted(path.parent for path in K8S.rglob("kustomization.yaml"))


def lock_vllm_closure() -> set[str]:
    """Names of every package the locked ``vllm`` (the GPU build) pulls in, extras followed: what its image has."""
    import tomllib

    packages: dict[str, list[dict[str, Any]]] = {}
    for package in tomllib.loads((ROOT / "uv.lock").read_text())["package"]:
        packages.setdefault(package["name"], []).append(package)
    seen: set[tuple[str, tuple[str, ...]]] = set()
    todo: list[tuple[str, tuple[str, ...]]] = [("vllm", ())]
    while todo:
        name, extras = todo.pop()
        if (name, extras) in seen:
            continue
        seen.add((name, extras))
        for package in packages.get(name, []):
            dependencies = list(package.get("dependencies", []))
            for extra in extras:
                dependencies += package.get("optional-dependencies", {}).get(extra, [])
            todo += [(dep["name"], tuple(sorted(dep.get("extra", [])))) for dep in dependencies]
    return {name for name, _ in seen}

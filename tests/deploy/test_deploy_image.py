"""The Dockerfile: base image in step with the lock, dependencies complete, and a command line our CLI accepts."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

from deploy_files import (
    ENTRYPOINT_SCRIPT,
    LIVENESS,
    ROOT,
    dockerfile_arg,
    dockerfile_instructions,
    dockerignored,
    entrypoint_argv,
    exec_form,
    final_stage,
    image_environment,
    lock_vllm_closure,
    parse_server_command,
    probe_paths,
)
from packaging.requirements import Requirement

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
DEFAULT_MODEL = "Diankun/Spatial-MLLM-v1.1-Instruct-135K"


def _extra_requirements() -> list[Requirement]:
    lines = (ROOT / "deploy" / "docker" / "extra-requirements.txt").read_text().splitlines()
    return [Requirement(line) for line in lines if line.strip() and not line.startswith("#")]


def test_base_image_is_the_locked_vllm_release() -> None:
    pinned = next(Requirement(r) for r in PYPROJECT["project"]["optional-dependencies"]["gpu"] if r.startswith("vllm"))
    (version,) = [spec.version for spec in pinned.specifier]
    locked = tomllib.loads((ROOT / "uv.lock").read_text())["package"]
    assert {p["version"] for p in locked if p["name"] == "vllm"} == {version}
    assert dockerfile_arg("VLLM_IMAGE") == f"vllm/vllm-openai:v{version}"


def test_every_runtime_dependency_is_installed_or_comes_with_vllm() -> None:
    ours = {Requirement(r).name: Requirement(r) for r in PYPROJECT["project"]["dependencies"]}
    extra = _extra_requirements()
    for requirement in extra:  # same specifier as pyproject, so the two cannot drift apart
        assert str(requirement) == str(ours[requirement.name])
    from_vllm = lock_vllm_closure()
    missing = set(ours) - {r.name for r in extra} - from_vllm
    assert not missing, f"neither in extra-requirements.txt nor a dependency of vllm: {missing}"
    assert {"torch", "vllm"}.isdisjoint(r.name for r in extra)  # never reinstall the image's CUDA builds


def test_image_command_line_is_accepted(tmp_path: Path) -> None:
    env = image_environment()
    assert exec_form("ENTRYPOINT") == ["/usr/local/bin/spatial-mllm-entrypoint"]
    argv = entrypoint_argv(exec_form("CMD"), env, tmp_path)
    args, settings = parse_server_command(argv, env)
    assert args.model == DEFAULT_MODEL
    assert (args.host, args.port) == ("0.0.0.0", 8000)
    assert args.gpu_memory_utilization == 0.78  # leaves an 80 GB GPU room for the geometry budget (docs/DEPLOY.md)
    volumes = {v for keyword, a in final_stage(dockerfile_instructions()) if keyword == "VOLUME" for v in json.loads(a)}
    assert {str(settings.uploads_dir), env["HF_HOME"]} == volumes
    assert [a for keyword, a in final_stage(dockerfile_instructions()) if keyword == "EXPOSE"] == [str(args.port)]


def test_model_variables_and_flags(tmp_path: Path) -> None:
    env = image_environment()
    assert entrypoint_argv([], {**env, "MODEL": "/models/mine"}, tmp_path)[:2] == ["--model", "/models/mine"]
    # SPATIAL_MLLM_MODEL, which the README promises for every option, is not shadowed by the image's MODEL.
    argv = entrypoint_argv([], {**env, "SPATIAL_MLLM_MODEL": "/models/env"}, tmp_path)
    assert parse_server_command(argv, env)[0].model == "/models/env"
    argv = entrypoint_argv(["--model", "/models/flag"], env, tmp_path)
    assert parse_server_command(argv, env)[0].model == "/models/flag"


def test_entrypoint_refuses_an_empty_model(tmp_path: Path) -> None:
    done = subprocess.run(["sh", str(ENTRYPOINT_SCRIPT)], env={"MODEL": "", "PATH": "/usr/bin:/bin"}, text=True,
                          capture_output=True)  # fmt: skip
    assert done.returncode != 0 and "set MODEL" in done.stderr


def test_runs_as_a_fixed_non_root_user_with_a_health_check() -> None:
    stage = final_stage(dockerfile_instructions())
    (user,) = [args for keyword, args in stage if keyword == "USER"]
    assert user == "${APP_UID}" and int(dockerfile_arg("APP_UID")) >= 1000
    (health,) = [args for keyword, args in stage if keyword == "HEALTHCHECK"]
    options, _, command = health.partition(" CMD ")
    assert "--start-period=" in options
    # liveness: orchestrators that replace unhealthy containers must not restart the engine for the geometry worker
    assert f"{LIVENESS}'" in command and "SPATIAL_MLLM_PORT" in command and LIVENESS in probe_paths()


def test_dockerignore_keeps_what_the_build_copies_and_drops_the_rest() -> None:
    sources = []
    for keyword, args in dockerfile_instructions():
        if keyword == "COPY" and "--from=" not in args:
            sources += [part for part in args.split()[:-1] if not part.startswith("--")]
    assert sources
    assert not [source for source in sources if dockerignored(source)]
    for secret_or_bulk in (".venv/bin/python", ".git/config", ".cache/uploads/x", ".env", "tests/conftest.py"):
        assert dockerignored(secret_or_bulk), secret_or_bulk


def test_build_time_dependency_check() -> None:
    from image_deps import unmet

    installed = {"torch": "2.13.0+cu130", "decord": "0.5.2"}.get
    requirements = ["torch==2.13.0", "decord==0.6.0", "cachetools>=5.3", "av>=13; extra == 'video'"]
    assert unmet(requirements, installed) == [
        "decord==0.6.0: found 0.5.2",
        "cachetools>=5.3: not installed",
    ]  # a local CUDA build satisfies its public version; extras' requirements are not ours to check
    script = ROOT / "deploy" / "docker" / "image_deps.py"
    done = subprocess.run([sys.executable, str(script), "check", "spatial-mllm-serve"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr  # this environment has everything pyproject asks for

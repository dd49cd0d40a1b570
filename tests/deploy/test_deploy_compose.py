"""docker-compose.yml: the server's command line, GPU reservation, volumes, secrets and the monitoring profile."""

from __future__ import annotations

from pathlib import Path

from deploy_files import (
    READINESS,
    ROOT,
    compose_with_override,
    entrypoint_argv,
    env_file,
    image_environment,
    load_yaml,
    parse_server_command,
    probe_paths,
)

COMPOSE = load_yaml(ROOT / "docker-compose.yml")
SERVER = COMPOSE["services"]["server"]
SECRETS = ("HF_TOKEN", "SPATIAL_MLLM_API_KEY")


def _server_environment() -> dict[str, str]:
    """Image ENV, then env_file, then `environment:` (pass-through entries take the host's value: placeholders)."""
    env = image_environment()
    for entry in SERVER["env_file"]:
        env.update(env_file(ROOT / entry["path"]))
    for entry in SERVER["environment"]:
        name, _, value = entry.partition("=")
        env[name] = value or f"placeholder-{name.lower()}"
    return env


def _mounts(service: dict) -> dict[str, str]:
    return {target: source for source, target, *_ in (volume.split(":") for volume in service["volumes"])}


def test_compose_command_is_accepted(tmp_path: Path) -> None:
    env = _server_environment()
    args, settings = parse_server_command(entrypoint_argv(SERVER["command"], env, tmp_path), env)
    assert args.model == env["MODEL"]
    assert settings.api_keys == ("placeholder-spatial_mllm_api_key",)
    assert [f"{args.port}:{args.port}"] == SERVER["ports"]
    # readiness: Compose never restarts on it; "healthy" means every kind of question is answered
    assert f":{args.port}{READINESS}" in " ".join(SERVER["healthcheck"]["test"]) and READINESS in probe_paths()
    mounts = _mounts(SERVER)
    assert mounts[str(settings.uploads_dir)] == "uploads" and mounts[env["HF_HOME"]] == "huggingface"
    devices = SERVER["deploy"]["resources"]["reservations"]["devices"]
    assert [(d["driver"], d["capabilities"]) for d in devices] == [("nvidia", ["gpu"])]
    gpus = devices[0].get("count", len(devices[0].get("device_ids", [])))
    assert gpus == args.tensor_parallel_size * args.pipeline_parallel_size * args.data_parallel_size
    assert SERVER["ipc"] == "host" or "shm_size" in SERVER


def test_data_parallel_override_reserves_one_gpu_per_engine(tmp_path: Path) -> None:
    """deploy/compose/data-parallel.yml merged over the base as Compose merges it: one server, 2 engines, 2 GPUs."""
    merged = compose_with_override(COMPOSE, ROOT / "deploy" / "compose" / "data-parallel.yml")
    server = merged["services"]["server"]
    env = _server_environment()
    args, settings = parse_server_command(entrypoint_argv(server["command"], env, tmp_path), env)
    (devices,) = server["deploy"]["resources"]["reservations"]["devices"]  # replaced (!override), not appended
    assert args.data_parallel_size == devices["count"] == 2 and args.tensor_parallel_size == 1
    assert settings.max_concurrent_requests > args.max_num_seqs * args.data_parallel_size - 1
    assert server["ports"] == SERVER["ports"] and server["healthcheck"] == SERVER["healthcheck"]  # the rest: base's


def test_secrets_pass_through_and_are_never_written() -> None:
    assert set(SECRETS) <= set(SERVER["environment"])  # bare names: the value comes from the shell or .env
    for entry in SERVER["env_file"]:
        assert not set(SECRETS) & set(env_file(ROOT / entry["path"]))


def test_volumes_and_bind_mounts_exist() -> None:
    for service in COMPOSE["services"].values():
        for source in _mounts(service).values():
            assert source in COMPOSE["volumes"] or (ROOT / source).exists(), source


def test_monitoring_profile_scrapes_the_server() -> None:
    assert "profiles" not in SERVER
    assert {name for name, s in COMPOSE["services"].items() if s.get("profiles") == ["monitoring"]} == {
        "prometheus",
        "grafana",
    }
    (job,) = load_yaml(ROOT / "deploy" / "prometheus" / "prometheus.yml")["scrape_configs"]
    port = SERVER["ports"][0].split(":")[-1]
    assert job["metrics_path"] == "/metrics" and job["static_configs"][0]["targets"] == [f"server:{port}"]
    (datasource,) = load_yaml(ROOT / "deploy" / "grafana" / "provisioning" / "datasources" / "prometheus.yml")[
        "datasources"
    ]
    assert datasource["url"] == "http://prometheus:9090"

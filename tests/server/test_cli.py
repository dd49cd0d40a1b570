"""The command line: vLLM's engine options pass through, ours exist, every option reads the environment, and
configuration mistakes are refused in one line before the engine starts."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from server.runtime.cli import build_parser, settings_from_args
from server.runtime.preflight import ConfigError, check_engine_options
from server.runtime.settings import ServerSettings


def test_engine_options_pass_through_and_ours_parse() -> None:
    args = build_parser(environ={}).parse_args(
        ["--model", "ckpt", "--tensor-parallel-size", "2", "--gpu-memory-utilization", "0.8", "--max-num-frames", "32"]
    )
    assert (args.model, args.tensor_parallel_size, args.gpu_memory_utilization) == ("ckpt", 2, 0.8)
    settings = settings_from_args(args)
    assert settings.max_num_frames == 32
    assert settings.default_strategy == "uniform"


def test_every_option_reads_the_environment() -> None:
    environ = {
        "SPATIAL_MLLM_MODEL": "from-env",
        "SPATIAL_MLLM_PORT": "9123",
        "SPATIAL_MLLM_DTYPE": "bfloat16",
        "SPATIAL_MLLM_API_KEY": "k1,k2",
        "SPATIAL_MLLM_MAX_NUM_FRAMES": "24",
        "SPATIAL_MLLM_ALLOW_PRIVATE_URLS": "true",
        "SPATIAL_MLLM_DEFAULT_STRATEGY": "space_aware",
        "SPATIAL_MLLM_ENFORCE_EAGER": "1",
    }
    args = build_parser(environ=environ).parse_args([])
    assert (args.model, args.port, args.dtype, args.enforce_eager) == ("from-env", 9123, "bfloat16", True)
    settings = settings_from_args(args)
    assert settings.api_keys == ("k1", "k2")
    assert args.api_key is None  # keys are ours to check, never vLLM's
    assert (settings.max_num_frames, settings.allow_private_urls, settings.default_strategy) == (
        24,
        True,
        "space_aware",
    )


def test_command_line_beats_environment() -> None:
    args = build_parser(environ={"SPATIAL_MLLM_PORT": "9123"}).parse_args(["--port", "8001"])
    assert args.port == 8001


def test_settings_refuse_inconsistent_caps() -> None:
    args = build_parser(environ={}).parse_args(["--default-num-frames", "80", "--max-num-frames", "64"])
    with pytest.raises(ValueError, match=r"--default-num-frames 80 must be within 1\.\.--max-num-frames"):
        settings_from_args(args)


# --- the command as a user runs it: mistakes are refused in one line before anything loads ---


def _serve(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environ = {key: value for key, value in os.environ.items() if not key.startswith(("SPATIAL_MLLM_", "VLLM_API"))}
    return subprocess.run(
        [sys.executable, "-m", "server", *argv],
        capture_output=True,
        text=True,
        timeout=120,
        env={**environ, **(env or {})},
    )


def _refused(done: subprocess.CompletedProcess[str]) -> str:
    """The one line a refusal prints; the refusal must exit non-zero without a traceback."""
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("spatial-mllm-serve: error: ")
    return lines[0]


@pytest.fixture(scope="module")
def busy_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def test_no_model_says_model_or_demo_is_needed() -> None:
    line = _refused(_serve("--port", "0"))
    assert "--model" in line and "--demo" in line


def test_demo_with_model_is_refused() -> None:
    assert "drop one of the two" in _refused(_serve("--demo", "--model", "some/model"))


def test_model_path_that_does_not_exist(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-checkpoint"
    line = _refused(_serve("--model", str(missing)))
    assert str(missing) in line and "no such folder" in line


def test_model_folder_without_config(tmp_path: Path) -> None:
    line = _refused(_serve("--model", str(tmp_path)))
    assert "config.json" in line


def test_model_from_the_environment_is_checked_too(tmp_path: Path) -> None:
    line = _refused(_serve(env={"SPATIAL_MLLM_MODEL": str(tmp_path / "absent")}))
    assert "no such folder" in line


@pytest.mark.parametrize("port", ["99999", "0"])
def test_port_out_of_range(tiny_checkpoint: Path, port: str) -> None:
    line = _refused(_serve("--model", str(tiny_checkpoint), "--port", port))
    assert f"--port {port} " in line and "1..65535" in line


def test_port_in_use(tiny_checkpoint: Path, busy_port: int) -> None:
    line = _refused(_serve("--model", str(tiny_checkpoint), "--host", "127.0.0.1", "--port", str(busy_port)))
    assert f"127.0.0.1:{busy_port} is in use" in line


def test_inconsistent_frame_limits(tiny_checkpoint: Path) -> None:
    line = _refused(_serve("--model", str(tiny_checkpoint), "--default-num-frames", "80", "--max-num-frames", "64"))
    assert "--default-num-frames 80" in line and "--max-num-frames" in line


def test_bad_value_from_the_environment_names_the_variable(tiny_checkpoint: Path) -> None:
    line = _refused(_serve("--model", str(tiny_checkpoint), env={"SPATIAL_MLLM_MAX_NUM_FRAMES": "many"}))
    assert "SPATIAL_MLLM_MAX_NUM_FRAMES" in line


@pytest.mark.parametrize(
    ("argv", "environ", "named"),
    [
        (["--headless"], {}, "--headless"),
        (["--api-server-count", "2"], {}, "--api-server-count"),
        ([], {"VLLM_API_KEY": "k"}, "VLLM_API_KEY"),
    ],
)
def test_flags_this_server_cannot_honour_are_refused(
    tiny_checkpoint: Path, argv: list[str], environ: dict[str, str], named: str
) -> None:
    args = build_parser(environ={}).parse_args(["--model", str(tiny_checkpoint), *argv])
    with pytest.raises(ConfigError, match=named):
        check_engine_options(args, environ)


def test_help_lists_our_options_with_one_line_each_without_loading_vllm() -> None:
    probe = (
        "import sys; from server.runtime.cli import main; main(['--help']); "
        "print('vllm loaded:', 'vllm' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True)
    text = done.stdout
    assert text.rstrip().endswith("vllm loaded: False")
    assert "--help=all" in text  # how to see vLLM's engine options
    assert ":class:" not in text and "``" not in text
    for name, info in ServerSettings.model_fields.items():
        if name == "api_keys":
            continue
        flag = "--" + name.replace("_", "-")
        assert flag in text
        assert info.description and info.description in text, name
    assert "--demo" in text and "--model" in text

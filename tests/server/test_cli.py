"""The command line: vLLM's engine options pass through, ours exist, and every option reads the environment."""

from __future__ import annotations

import pytest

from server.cli import build_parser, settings_from_args


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
    with pytest.raises(ValueError, match="--default-num-frames 80 must be within 1..--max-num-frames"):
        settings_from_args(args)

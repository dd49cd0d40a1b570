"""Where engines and the geometry worker run on one node, and the memory check that follows from it: with
``--data-parallel-size N`` every GPU may carry an engine, and only the engine on the worker's GPU shares its
memory with the worker. No GPU here: GPU counts and sizes are given to the pure functions; the refusal on this
CPU-only machine runs the real command."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from server.frames.geometry_worker import budget_refusal
from server.runtime.cli import build_parser
from server.runtime.gpu_layout import check_gpus_suffice, engine_gpus, engine_share_bytes, geometry_device
from server.runtime.settings import GiB

H100 = 80 * GiB


def _args(*argv: str):
    return build_parser(environ={}).parse_args(["--model", "ckpt", *argv])


def test_engines_take_consecutive_gpus_per_data_parallel_rank() -> None:
    assert engine_gpus(_args()) == {0}
    assert engine_gpus(_args("--data-parallel-size", "4")) == {0, 1, 2, 3}
    assert engine_gpus(_args("--data-parallel-size", "2", "--tensor-parallel-size", "2")) == {0, 1, 2, 3}
    assert engine_gpus(_args("--data-parallel-size", "2", "--data-parallel-size-local", "1")) == {0}
    assert engine_gpus(_args("--data-parallel-size", "2", "--device-ids", "3,5")) == {3, 5}


def test_auto_puts_the_worker_on_the_last_gpu_else_the_cpu() -> None:
    assert geometry_device("auto", 0) == "cpu"
    assert geometry_device("auto", 1) == "cuda:0"
    assert geometry_device("auto", 8) == "cuda:7"
    assert geometry_device("cuda", 2) == "cuda:0"
    assert geometry_device("cuda:1", 2) == "cuda:1"
    assert geometry_device("cpu", 8) == "cpu"


@pytest.mark.parametrize(
    ("setting", "gpus", "says"),
    [
        ("cuda:2", 2, "only 2 GPU(s) are visible"),
        ("cuda:0", 0, "no CUDA GPU"),
        ("gpu1", 1, "say auto, cpu, cuda or cuda:N"),
    ],
)
def test_a_device_that_cannot_be_is_refused(setting: str, gpus: int, says: str) -> None:
    with pytest.raises(ValueError) as refused:
        geometry_device(setting, gpus)
    assert str(refused.value).startswith(f"--space-aware-device {setting}: ") and says in str(refused.value)


def test_engines_need_their_gpus() -> None:
    check_gpus_suffice(_args("--data-parallel-size", "4"), 4)
    check_gpus_suffice(_args("--data-parallel-size", "4"), 0)  # off CUDA vLLM's own platform rules apply
    with pytest.raises(ValueError, match="needs 4 GPUs, 2 are visible"):
        check_gpus_suffice(_args("--data-parallel-size", "2", "--tensor-parallel-size", "2"), 2)


def test_only_the_engine_on_the_workers_gpu_counts() -> None:
    dp2 = _args("--data-parallel-size", "2", "--gpu-memory-utilization", "0.85")
    assert engine_share_bytes(dp2, "cuda:1", H100) == int(0.85 * H100)  # engine 1 runs there
    assert engine_share_bytes(dp2, "cuda:2", H100) == 0  # a third GPU no engine uses
    assert engine_share_bytes(dp2, "cpu", H100) == 0
    dp1 = _args("--gpu-memory-utilization", "0.85")
    assert engine_share_bytes(dp1, "cuda:1", H100) == 0  # DP=1 runs only on cuda:0


def test_the_budget_check_is_per_device_with_data_parallel() -> None:
    budget = 8 * GiB  # about what 128 candidates need
    dp2 = _args("--data-parallel-size", "2", "--gpu-memory-utilization", "0.85")
    assert budget_refusal(dp2, "cuda:1", H100, budget) is None  # 68 + 8 + 0.5 <= 80
    crowded = _args("--data-parallel-size", "2", "--gpu-memory-utilization", "0.92")
    line = budget_refusal(crowded, "cuda:1", H100, budget)
    assert line is not None and "share of the engine on cuda:1 (73.6 GiB)" in line
    assert "--gpu-memory-utilization" in line
    assert budget_refusal(crowded, "cuda:2", H100, budget) is None  # a free third GPU takes it whatever the share


def test_the_command_refuses_a_gpu_this_machine_does_not_have(tiny_checkpoint: Path) -> None:
    environ = {key: value for key, value in os.environ.items() if not key.startswith(("SPATIAL_MLLM_", "VLLM_API"))}
    done = subprocess.run(
        [sys.executable, "-m", "server", "--model", str(tiny_checkpoint), "--space-aware-device", "cuda:1"],
        capture_output=True,
        text=True,
        timeout=300,
        env=environ,
    )
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    # refused before vLLM's engine arguments load (vLLM's platform notices may precede it): it is the last line
    assert done.stderr.strip().splitlines()[-1] == (
        "spatial-mllm-serve: error: --space-aware-device cuda:1: this machine has no CUDA GPU; use cpu or auto"
    )

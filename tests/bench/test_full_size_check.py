"""bench/full_size_check.py's own pieces, without an engine: the served-parameter line, the process-tree memory
sampler, the server command's caps, the checkpoint cache; and the geometry memory bench's plan arithmetic."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.full_size_check import PART_NAMES, TreeMemory, ensure_checkpoint, parse_args, served_parameters
from bench.full_size_check import server_command as full_size_server_command
from bench.geometry_memory import extrapolate, to_markdown
from model_plugin.vllm_base import PARAMETERS_LOG_PREFIX


def test_served_parameters_come_from_the_models_own_log_line() -> None:
    counts = {"total": 10, "llm": 5, "vit": 2, "vggt": 2, "connector": 1}
    log = f"INFO boot\n(EngineCore pid=1) INFO 12-06 [vllm_base.py:1] {PARAMETERS_LOG_PREFIX}{json.dumps(counts)}\n"
    assert served_parameters(log) == counts
    with pytest.raises(RuntimeError, match="no parameter line"):
        served_parameters("INFO boot\n")
    assert tuple(counts) == PART_NAMES


def test_tree_memory_counts_children() -> None:
    """A child holding 200 MiB shows in the parent's tree peak (the engine and geometry worker are children)."""
    child = "import time; b = bytearray(200 << 20); b[::4096] = b'x' * len(b[::4096]); time.sleep(30)"
    parent = f"import subprocess, sys; subprocess.run([sys.executable, '-c', {child!r}])"
    process = subprocess.Popen([sys.executable, "-c", parent])
    try:
        with TreeMemory(process.pid, interval_s=0.1) as memory:
            deadline = time.monotonic() + 20
            while memory.peak < 200 << 20 and time.monotonic() < deadline:
                time.sleep(0.2)
    finally:
        for child_process in TreeMemory(process.pid).root.children(recursive=True):
            child_process.kill()
        process.kill()
        process.wait()
    assert memory.peak >= 200 << 20


def test_server_command_serves_in_the_dtype_with_small_caps(tmp_path: Path) -> None:
    options = parse_args([])
    command = full_size_server_command(tmp_path, "bfloat16", options, 1234)
    flags = dict(zip(command[3::2], command[4::2], strict=False))
    assert command[command.index("--dtype") + 1] == "bfloat16"
    assert command[command.index("--max-pixels-per-frame") + 1] == str(224 * 308)
    assert command[command.index("--space-aware-candidates") + 1] == "16"  # 8 chosen of 16: a real selection
    assert int(command[command.index("--max-num-frames") + 1]) == 8
    assert flags["--model"] == str(tmp_path)


def test_a_cached_checkpoint_is_reused_and_a_partial_one_never(tmp_path: Path) -> None:
    ready = tmp_path / "full-v1.1"
    ready.mkdir()
    (ready / "config.json").write_text("{}")
    assert ensure_checkpoint(tmp_path, "v1.1") == (ready, None)
    (tmp_path / "tiny-v1.0.partial").mkdir()  # an interrupted build: rebuilt, then renamed
    path, built = ensure_checkpoint(tmp_path, "v1.0", size="tiny")
    assert path == tmp_path / "tiny-v1.0" and (path / "config.json").exists()
    assert built is not None and built["bytes"] > 0 and built["peak_rss_bytes"] > 0


def test_geometry_memory_projection_reads_the_checkpoint_shapes(tiny_checkpoint: Path) -> None:
    projection = extrapolate(tiny_checkpoint, candidates=128, height=392)
    # a bfloat16 pass keeps float32 weights, token stream and kept layers (the original's sa_sampling, see
    # model_plugin.dtype_rules), so it is planned at float32's bytes: both projections are one plan
    assert projection["float32"]["planned_bytes"] == projection["bfloat16"]["planned_bytes"] > 0
    row = {
        "candidates": 8, "height": 126, "width": 518, "chunk": 8, "planned_bytes": 2 << 30,
        "measured_bytes": 3 << 29, "ratio": 0.75, "planned_activation_bytes": 1 << 30,
        "measured_activation_bytes": 1 << 29, "activation_ratio": 0.5, "vggt_s": 1.0,
    }  # fmt: skip
    table = to_markdown([row], projection)
    assert "| 8 | 126x518 | 8 | 2.00 | 1.50 | 0.75 |" in table

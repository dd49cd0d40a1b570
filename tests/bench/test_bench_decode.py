"""The decode benchmark on a small video: each pair's sides return the same frames; the report interface holds."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from bench.bench_decode import (
    LABELS,
    PAIRS,
    main,
    make_video,
    measure,
    ours,
    pyav_frames,
    qwen_vl_utils_frames,
    read_pngs,
    time_interleaved,
    write_pngs,
)
from bench.protocol import Protocol, shuffled_orders
from sampling.uniform import UniformSpec, sample_uniform_from


def test_every_path_returns_the_same_frames(tmp_path: Path) -> None:
    path = make_video(tmp_path / "v.mp4", seconds=1.0, fps=10, width=64, height=48)
    data = path.read_bytes()
    indices = [0, 3, 6, 9]
    want = ours(data, indices)
    assert want.shape == (4, 48, 64, 3)
    np.testing.assert_array_equal(read_pngs(write_pngs(want, tmp_path)), want)
    np.testing.assert_array_equal(ours(data, indices, num_threads=1), want)
    np.testing.assert_array_equal(pyav_frames(data, indices), want)
    assert torch.equal(qwen_vl_utils_frames(path, 4), sample_uniform_from(data, UniformSpec(nframes=4)).frames)


def test_interleaved_timing_shuffles_the_order_per_round_with_a_seed() -> None:
    calls: list[str] = []
    steady = Protocol(calibrate=lambda: 1.0)  # a machine whose speed never moves: no round is re-run
    samples = time_interleaved({name: (lambda n=name: calls.append(n)) for name in "abc"}, reps=3, protocol=steady)
    rounds = shuffled_orders(list("abc"), 3, seed=0)
    assert calls == list("abc") + [name for order in rounds for name in order]  # warm-up, then seeded shuffles
    assert {name: len(times) for name, times in samples.items()} == {"a": 3, "b": 3, "c": 3}


def test_measure_and_report_interface(tmp_path: Path) -> None:
    result = measure(seconds=1.0, fps=10, width=64, height=48, frames=4, reps=2, candidates=8)
    assert result["meta"]["indices"] == [0, 3, 6, 9] and result["meta"]["reps"] == 2
    assert result["meta"]["candidates"] == 8 and result["meta"]["torch_threads"] >= 1
    assert result["checks"]["png_read_equals_ours"] and result["checks"]["qwen_vl_utils_equals_ours_uniform"]
    assert result["checks"]["pyav_max_abs_diff"] == 0
    assert set(result["samples_s"]) == set(LABELS) and all(len(t) == 2 for t in result["samples_s"].values())
    assert set(result["ratios"]) == {f"{slow}/{fast}" for slow, fast, _ in PAIRS}

    out = tmp_path / "decode.json"
    main(["--seconds", "1", "--fps", "10", "--width", "64", "--height", "48", "--frames", "4", "--reps", "1",
          "--candidates", "8", "--json", str(out)])  # fmt: skip
    assert json.loads(out.read_text())["meta"]["reps"] == 1

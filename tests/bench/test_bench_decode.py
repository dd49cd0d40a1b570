"""The decode benchmark on a small video: every path returns the seed's frames, and the report interface holds."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from bench.bench_decode import (
    LABELS,
    main,
    make_video,
    measure,
    ours,
    pyav_frames,
    seed_round_trip,
    time_interleaved,
    to_markdown,
)


def test_every_path_returns_the_same_frames(tmp_path: Path) -> None:
    path = make_video(tmp_path / "v.mp4", seconds=1.0, fps=10, width=64, height=48)
    data = path.read_bytes()
    indices = [0, 3, 6, 9]
    want = ours(data, indices)
    assert want.shape == (4, 48, 64, 3)
    np.testing.assert_array_equal(seed_round_trip(path, indices), want)
    np.testing.assert_array_equal(ours(data, indices, num_threads=1), want)
    np.testing.assert_array_equal(pyav_frames(data, indices), want)


def test_interleaved_timing_rotates_the_order() -> None:
    calls: list[str] = []
    samples = time_interleaved({name: (lambda n=name: calls.append(n)) for name in "abc"}, reps=3)
    assert calls == list("abc") + list("abc") + list("bca") + list("cab")  # warm-up, then rotating rounds
    assert {name: len(times) for name, times in samples.items()} == {"a": 3, "b": 3, "c": 3}


def test_measure_and_report_interface(tmp_path: Path, capsys) -> None:
    result = measure(seconds=1.0, fps=10, width=64, height=48, frames=4, reps=2)
    assert result["meta"]["indices"] == [0, 3, 6, 9] and result["meta"]["reps"] == 2
    assert result["checks"] == {"ours_equals_seed": True, "pyav_max_abs_diff": 0}
    assert all(len(times) == 2 for times in result["samples_s"].values())
    assert set(result["median_s"]) == set(LABELS) and result["speedup_vs_seed"]["seed"] == 1.0
    json.dumps(result)
    table = to_markdown(result)
    assert all(label in table for label in LABELS.values()) and "| 1.00x |" in table

    out = tmp_path / "decode.json"
    main(["--seconds", "1", "--fps", "10", "--width", "64", "--height", "48", "--frames", "4", "--reps", "1",
          "--json", str(out)])  # fmt: skip
    assert "speed-up vs seed" in capsys.readouterr().out
    assert json.loads(out.read_text())["meta"]["reps"] == 1

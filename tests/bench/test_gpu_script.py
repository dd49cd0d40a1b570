"""The GPU benchmark script, checked on CPU at tiny sizes so it cannot rot before a GPU runs it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import bench.gpu_spatial_encoder as gpu
from bench.gpu_spatial_encoder import FULL, SPACE_AWARE_CASE, aggregator_flops, main, to_markdown


def test_tiny_run_writes_json_the_report_renders(tmp_path: Path) -> None:
    out = tmp_path / "gpu.json"
    main(["--device", "cpu", "--dtype", "float32", "--tiny", "--reps", "1", "--json", str(out)])
    result = json.loads(out.read_text())
    assert result["meta"]["tiny"] is True and result["meta"]["reps"] == 1
    names = [row["name"] for row in result["rows"]]
    assert names[0] == gpu.ROW_SERVED and names[-1] == "connector"
    assert sum(name.startswith("aggregator") for name in names) == 4
    assert any(name.startswith("space-aware") for name in names)
    selection = [row for row in result["rows"] if row["name"].startswith("selection")]
    assert len(selection) == 2 and all(row["same_selection"] for row in selection)
    assert "torch.unique on cpu" in selection[0]["name"]
    assert all(len(row["samples_s"]) == 1 and row["median_s"] > 0 for row in result["rows"])
    projection = result["projection"]
    assert projection["label"].startswith("PROJECTION") and projection["assumptions"]
    assert 0 < projection["uniform_s"] < projection["space_aware_s"]
    text = to_markdown(result)
    assert "TINY sizes" in text and "PROJECTION" in text and "same frames: True" in text


def test_a_time_out_keeps_every_finished_case(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The JSON is rewritten after each case: a run killed during the fourth case still holds the first three."""
    out = tmp_path / "gpu.json"
    timed = gpu._timed
    calls = []

    def stop_at_fourth(*args, **kwargs):
        calls.append(args[0])
        if len(calls) == 4:
            raise TimeoutError("killed by run.sh's timeout")
        return timed(*args, **kwargs)

    monkeypatch.setattr(gpu, "_timed", stop_at_fourth)
    with pytest.raises(TimeoutError):
        gpu.measure("cpu", "float32", 1, True, out)
    result = json.loads(out.read_text())
    assert [row["name"] for row in result["rows"]] == calls[:3]
    assert result["projection"]["uniform_s"] > 0  # projected from the cases that finished
    assert result["projection"]["space_aware_s"] is None  # the space-aware pass was the fourth case


def test_vggt_1b_flops_on_128_candidates() -> None:
    """The analytic count grows with the candidates' tokens: 128 frames at 392x518 is ~2 PFLOP for VGGT-1B."""
    assert 1.5e15 < aggregator_flops(SPACE_AWARE_CASE, FULL) < 2.5e15


def test_projection_sizes_match_qwen2_5_vl_3b() -> None:
    """The LLM's non-embedding parameters are Qwen2.5-3B's published 2.77B; one VSI-Bench video is 3,128 tokens."""
    assert 2.75e9 < gpu.llm_layer_params() < 2.79e9
    w = gpu.VSI_BENCH
    assert w["frames"] // 2 * (w["height"] // 28) * (w["width"] // 28) == 3128
    # ViT: 12,512 patches (2 frames x 14 x 14 each) through 32 blocks of 1280 (SwiGLU 3420): ~16 TFLOP per video
    assert 14e12 < gpu.vit_flops(w["frames"], w["height"], w["width"]) < 19e12


def test_projection_adds_up() -> None:
    """Uniform = videos x per-video + questions x per-question; space-aware adds the pass and selection per video."""
    served_tflop = aggregator_flops(gpu.Case(16, 476, 644), FULL) / 1e12
    result = {
        "meta": {"matmul_tflops": 500.0, "copy_gb_s": 2000.0, "sizes": FULL},
        "rows": [
            {"name": gpu.ROW_SERVED, "frames": 16, "median_s": 0.5, "tflop": served_tflop},
            {"name": gpu.ROW_PASS, "frames": 128, "median_s": 4.0},
            {"name": gpu.ROW_OURS, "frames": 128, "median_s": 0.2},
        ],
    }
    projection = gpu.project(result)
    per_video = {k: v for k, v in projection["per_video"].items() if k in ("vggt_s", "vit_s", "llm_video_prefill_s")}
    assert projection["per_video"]["vggt_s"] == pytest.approx(0.5)
    want = 288 * sum(per_video.values()) + 5130 * sum(projection["per_question"].values())
    assert projection["uniform_s"] == pytest.approx(want)
    assert projection["space_aware_s"] == pytest.approx(want + 288 * 4.2)

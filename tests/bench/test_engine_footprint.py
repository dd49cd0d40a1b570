"""The footprint benchmark without an engine: the peak reset, the all-layers wrapper, the analytic sizes, and
the summary and table from canned runs (the engine runs themselves belong to ``python -m bench.engine_footprint``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import bench.engine_footprint as footprint
from model_plugin.vggt.aggregator import Aggregator


@pytest.fixture
def restore_aggregator(monkeypatch: pytest.MonkeyPatch) -> None:
    """``use_layers`` patches ``Aggregator.forward`` for the process; put it back after the test."""
    monkeypatch.setattr(Aggregator, "forward", Aggregator.forward)


def test_peak_rss_reset_works_here() -> None:
    block = np.ones(256 * 2**20, np.uint8)  # touch 256 MiB, then give it back
    del block
    assert footprint._status_mib("VmHWM") - footprint._status_mib("VmRSS") > 200
    footprint.reset_peak_rss()
    assert footprint._status_mib("VmHWM") - footprint._status_mib("VmRSS") < 16


@pytest.mark.usefixtures("restore_aggregator")
def test_all_layers_variant_returns_the_same_layer() -> None:
    torch.manual_seed(0)
    aggregator = Aggregator(
        img_size=56,
        patch_size=14,
        embed_dim=32,
        depth=3,
        num_heads=2,
        patch_embed="dinov2_vits14_reg",
        dino_depth=1,
        dino_num_heads=2,
    )
    images = torch.rand(1, 2, 3, 28, 42)
    (want,), start = aggregator(images, layers=[-2])
    pids = footprint.use_layers("all")
    (got,), got_start = aggregator(images, layers=[-2])
    torch.testing.assert_close(got, want, rtol=0, atol=0)
    assert got_start == start and len(pids) == 1
    assert len(aggregator(images)[0]) == 3  # asking for every layer still works


def test_analytic_sizes() -> None:
    real = footprint.VGGT_1B
    shape = (real["frames"], real["height"], real["width"], real["channels_2c"], real["bytes"])
    assert footprint.kept_bytes(1, *shape) == 16 * (34 * 46 + 5) * 2048 * 2
    assert footprint.kept_bytes(24, *shape) == 24 * footprint.kept_bytes(1, *shape)
    assert footprint.kept_bytes(2, 16, 252, 336, 128, 4) == 2 * 16 * (18 * 24 + 5) * 128 * 4


@pytest.mark.usefixtures("restore_aggregator")
def test_child_aggregator_run_through_the_cli(tiny_checkpoint: Path, tmp_path: Path) -> None:
    results = {}
    for variant in footprint.VARIANTS:
        out = tmp_path / f"{variant}.json"
        footprint.main(["--variant", variant, "--part", "aggregator", "--checkpoint", str(tiny_checkpoint),
                        "--frames", "4", "--height", "56", "--width", "84", "--json", str(out)])  # fmt: skip
        results[variant] = json.loads(out.read_text())
    assert results["one"]["output_shape"] == [4, 4 * 6 + 5, 128]
    assert results["one"]["output_sha256"] == results["all"]["output_sha256"]
    assert all(r["peak_mib"] >= r["rss_before_mib"] > 0 for r in results.values())


def test_measure_summary_and_table_from_canned_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, str]] = []

    def fake_child(checkpoint: Path, variant: str, part: str, *_: Any) -> dict[str, Any]:
        assert (checkpoint / "config.json").exists()
        calls.append((variant, part))
        extra = 10.0 if variant == "all" else 0.0
        if part == "aggregator":
            return {"peak_mib": 800 + extra, "rise_mib": 50 + extra, "seconds": 0.3, "output_sha256": "x"}
        return {
            "peak_mib": 3000 + extra, "rise_mib": 40 + extra, "rss_before_mib": 2960.0, "engine_start_s": 20.0,
            "latency_s": 0.5, "generated_token_ids": [1, 2, 3], "aggregator_in_this_process": True,
        }  # fmt: skip

    monkeypatch.setattr(footprint, "_child", fake_child)
    result = footprint.measure(reps=2)
    first = [(v, part) for v in ("one", "all") for part in ("aggregator", "engine")]
    second = first[2:] + first[:2]  # the other variant goes first in the second rep
    assert calls == first + second
    assert result["checks"] == {
        "same_generated_tokens": True,
        "same_aggregator_output": True,
        "aggregator_in_engine_process": True,
    }
    assert result["median"]["engine"]["all"]["rise_mib"] == 50
    assert result["analytic_bytes"]["measured"]["all"] == 2 * result["analytic_bytes"]["measured"]["one"]
    json.dumps(result)
    table = footprint.to_markdown(result)
    row = "| every layer (original) | 3010 MiB (3010–3010) | 50.0 MiB (50.0–50.0) | 60.0 MiB (60.0–60.0) | 6.8 MiB |"
    assert row + " 2354 MiB |" in table  # medians with the min–max of the two runs
    assert "| all / one | 1.00x | 1.25x | 1.20x | 2.00x | 24.00x |" in table

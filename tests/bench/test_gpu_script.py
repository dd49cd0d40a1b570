"""The GPU benchmark script, checked on CPU at tiny sizes so it cannot rot before a GPU runs it."""

from __future__ import annotations

import json
from pathlib import Path

from bench.gpu_spatial_encoder import FULL, SPACE_AWARE_CASE, aggregator_flops, main, to_markdown


def test_tiny_run_writes_json_the_report_renders(tmp_path: Path) -> None:
    out = tmp_path / "gpu.json"
    main(["--device", "cpu", "--dtype", "float32", "--tiny", "--reps", "1", "--json", str(out)])
    result = json.loads(out.read_text())
    assert result["meta"]["tiny"] is True and result["meta"]["reps"] == 1
    names = [row["name"] for row in result["rows"]]
    assert sum(name.startswith("aggregator") for name in names) == 4 and names[-1] == "connector"
    assert any(name.startswith("space-aware") for name in names)
    assert all(len(row["samples_s"]) == 1 and row["median_s"] > 0 for row in result["rows"])
    assert "TINY sizes" in to_markdown(result)


def test_vggt_1b_flops_on_128_candidates() -> None:
    """The analytic count grows with the candidates' tokens: 128 frames at 392x518 is ~2 PFLOP for VGGT-1B."""
    assert 1.5e15 < aggregator_flops(SPACE_AWARE_CASE, FULL) < 2.5e15

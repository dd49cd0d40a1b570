"""`make bench`'s pipeline on one small section: real run, rendered page, raw results; structure, not numbers."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

from bench.report import ROOT, SECTIONS, main


def test_quick_report_renders_the_page_from_a_real_run(tmp_path: Path) -> None:
    main(["--quick", "--only", "select_frames", "--docs", str(tmp_path), "--no-gpu-check"])
    page = (tmp_path / "BENCHMARKS.md").read_text()
    assert not re.findall(r"\{\{[^}]+\}\}", page)
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    assert f"Generated from commit `{head}" in page
    result = json.loads((tmp_path / "bench" / "select_frames.json").read_text())
    assert result["meta"]["quick"] is True and result["meta"]["wall_s"] > 0
    assert result["rows"] and all(row["samples_ms"] for row in result["rows"])
    assert (tmp_path / "bench" / "select_frames.png").read_bytes()[:4] == b"\x89PNG"
    for section in SECTIONS:  # sections not run say how to run them
        if section.name != "select_frames":
            assert f"run `python -m bench.report --only {section.name}`" in page

    # re-rendering keeps the saved results
    main(["--render", "--docs", str(tmp_path), "--no-gpu-check"])
    assert "run `python -m bench.report --only select_frames`" not in (tmp_path / "BENCHMARKS.md").read_text()


def test_every_section_module_has_the_report_interface() -> None:
    import importlib

    for section in SECTIONS:
        module = importlib.import_module(f"bench.{section.module}")
        assert callable(module.measure) and callable(module.to_markdown) and callable(module.main), section.module

"""`make bench`'s pipeline: real benchmark runs (quick sizes) rendered into the page, plots and raw results."""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch

from bench.report import SECTIONS, main


def test_quick_report_runs_cpu_sections_and_renders_the_page(tmp_path: Path) -> None:
    main(["--quick", "--only", "select_frames", "decode", "--docs", str(tmp_path)])
    page = (tmp_path / "BENCHMARKS.md").read_text()
    assert not re.findall(r"\{\{[^}]+\}\}", page)
    assert page.count("Quick run (`--quick`)") == 2
    assert "| 8 |" in page and "| 16 |" in page and "ratio vs plain" in page  # the selection table
    if not torch.cuda.is_available():  # the GPU section says so, after checking the script on CPU
        assert "Not run: no GPU on the machine that generated this page" in page
    for name in ("end_to_end", "server_overhead", "engine_footprint"):
        assert f"run `python -m bench.report --only {name}`" in page
    result = json.loads((tmp_path / "bench" / "select_frames.json").read_text())
    assert result["meta"]["quick"] is True and result["meta"]["wall_s"] > 0
    assert (tmp_path / "bench" / "select_frames.png").read_bytes()[:4] == b"\x89PNG"

    # a later --only run keeps the sections it did not re-run
    main(["--quick", "--only", "select_frames", "--docs", str(tmp_path)])
    assert (
        "Not measured yet: run `python -m bench.report --only decode`" not in (tmp_path / "BENCHMARKS.md").read_text()
    )


def test_every_section_module_has_the_report_interface() -> None:
    import importlib

    for section in SECTIONS:
        module = importlib.import_module(f"bench.{section.module}")
        assert callable(module.measure) and callable(module.to_markdown) and callable(module.main), section.module

"""`make bench`'s pipeline on one small section: real run, rendered page, raw results; structure, not numbers."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from bench.report import ROOT, SECTIONS, main


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One real quick run of one section (``--quick --only select_frames``); returns its docs folder."""
    docs = tmp_path_factory.mktemp("docs")
    main(["--quick", "--only", "select_frames", "--docs", str(docs), "--no-gpu-check"])
    return docs


def test_quick_report_renders_the_page_from_a_real_run(quick_run: Path, tmp_path: Path) -> None:
    page = (quick_run / "BENCHMARKS.md").read_text()
    assert not re.findall(r"\{\{[^}]+\}\}", page)
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    assert f"Generated from commit `{head}" in page
    result = json.loads((quick_run / "bench" / "select_frames.json").read_text())
    assert result["meta"]["quick"] is True and result["meta"]["wall_s"] > 0
    assert result["rows"] and all(row["samples_ms"] for row in result["rows"])
    assert (quick_run / "bench" / "select_frames.png").read_bytes()[:4] == b"\x89PNG"
    for section in SECTIONS:  # sections not run say how to run them
        if section.name != "select_frames":
            assert f"run `python -m bench.report --only {section.name}`" in page

    # re-rendering (into a copy, the module's run stays as it was) keeps the saved results
    shutil.copytree(quick_run, tmp_path, dirs_exist_ok=True)
    main(["--render", "--docs", str(tmp_path), "--no-gpu-check"])
    assert "run `python -m bench.report --only select_frames`" not in (tmp_path / "BENCHMARKS.md").read_text()


def test_every_section_module_has_the_report_interface() -> None:
    import importlib

    for section in SECTIONS:
        module = importlib.import_module(f"bench.{section.module}")
        assert callable(module.measure) and callable(module.to_markdown) and callable(module.main), section.module


def test_the_header_counts_repetitions_from_the_saved_results() -> None:
    from bench.report import repetitions

    noisy = {"reruns": [], "noisy": True, "noisy_reasons": ["x"], "tolerance": 0.15}
    steady = {**noisy, "noisy": False, "noisy_reasons": []}
    results = {
        "end_to_end": {"meta": {"reps": 3, "protocol": steady}},
        "server_overhead": {"meta": {"rounds": 7, "protocol": noisy}},
        "stream_gap": {"meta": {}},  # a result saved before the protocol: one stream per condition
        "engine_footprint": {"meta": {"reps": 1, "quick": True}},
    }
    line = repetitions(results)
    assert "`end_to_end` 3 passes per path and question count;" in line
    assert "`server_overhead` 7 rounds (**noisy**)" in line
    assert "`stream_gap` 1 stream per condition" in line
    assert "`engine_footprint` 1 fresh processes per variant (quick run)" in line
    assert "decode" not in line  # a section without a result is not counted
    assert repetitions({}).endswith("none yet.")


def test_a_noisy_section_is_flagged_above_its_table(quick_run: Path, tmp_path: Path) -> None:
    from bench.report import render

    result = json.loads((quick_run / "bench" / "select_frames.json").read_text())
    assert result["meta"]["protocol"]["calibrations"]  # every round was calibrated
    result["meta"]["protocol"] |= {"noisy": True, "noisy_reasons": ["round 0: the machine's speed changed"]}
    page = render({"select_frames": result}, "no gpu", tmp_path)
    assert "**Noisy run: the protocol flagged this section" in page
    assert "**Noisy:** round 0: the machine's speed changed." in page
    assert "`select_frames` 1 runs per contender and size (quick run) (**noisy**)" in page

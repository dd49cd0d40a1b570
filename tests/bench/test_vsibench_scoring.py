"""VSI-Bench scoring reproduces the reference's golden rows and metrics, through the API and the CLI."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import fixture_path

from bench.vsibench.__main__ import main
from bench.vsibench.scoring import (
    _MRA_THRESHOLDS,
    calculate_metrics,
    clean_text,
    mean_relative_accuracy,
    rescore,
    score_row,
    vsi_reward,
)
from bench.vsibench.table import label_for, metrics_table

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def results() -> list[dict[str, Any]]:
    return json.loads(fixture_path("vsibench_metrics", "results.json").read_text())


@pytest.fixture(scope="module")
def metrics() -> dict[str, Any]:
    return json.loads(fixture_path("vsibench_metrics", "metrics.json").read_text())


def assert_metrics_equal(got: dict[str, Any], want: dict[str, Any], tol: float = 1e-12) -> None:
    assert list(got["per_question_type"]) == list(want["per_question_type"])  # sorted by name
    for qtype, entry in want["per_question_type"].items():
        assert got["per_question_type"][qtype]["count"] == entry["count"], qtype
        assert got["per_question_type"][qtype]["score"] == pytest.approx(entry["score"], abs=tol), qtype
    for group in ("acc", "mra", "all"):
        for kind in ("micro", "macro"):
            assert got[group][kind] == pytest.approx(want[group][kind], abs=tol), (group, kind)


# --------------------------------------------------------------------------------------------------------
# rows


def test_fixture_shape(results: list[dict[str, Any]]) -> None:
    assert len(results) == 150
    assert len({row["sample"]["question_type"] for row in results}) == 10


def test_every_row_cleaned_and_rewarded_like_the_reference(results: list[dict[str, Any]]) -> None:
    failures = []
    for row in results:
        sample = row["sample"]
        pred, gt = clean_text(row["model_output"]), clean_text(sample["ground_truth"])
        reward = vsi_reward(gt, pred, sample["question_type"])
        expected = (row["cleaned_model_output"], row["cleaned_gt_answer"])
        if (pred, gt) != expected or abs(reward - row["reward"]) > 1e-9:
            failures.append((sample["id"], sample["fixture_tag"], pred, gt, reward, row["reward"]))
    assert not failures


def test_rows_rebuilt_exactly(results: list[dict[str, Any]]) -> None:
    """score_row reproduces the whole stored row; rewards are float32 values, so equality is exact."""
    for row in results:
        assert score_row(row["sample"], row["model_output"], row["prompt"]) == row
    assert rescore(results) == results


def test_mra_thresholds_are_float32_arange() -> None:
    listed = [0.5, 0.55000001, 0.60000002, 0.64999998, 0.69999999, 0.75, 0.80000001, 0.85000002, 0.89999998]
    got = _MRA_THRESHOLDS.tolist()
    assert got[:-1] == pytest.approx(listed, abs=5e-9)
    assert got == [float(np.float32(x)) for x in (0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95)]


def test_mra_is_float32() -> None:
    assert mean_relative_accuracy(12.5, 10.0) == 0.5  # float64 arithmetic would give 0.6
    assert mean_relative_accuracy(150.2, 126.0) == 0.699999988079071
    assert mean_relative_accuracy(math.nan, 3.0) == 0.0
    assert mean_relative_accuracy(3.0, 3.0) == 1.0


@pytest.mark.parametrize(
    ("text", "cleaned"),
    [
        ("<answer>A</answer> then <answer>\n B. \n</answer>", "b"),
        ("<answer>unclosed B", "<answer>unclosed b"),
        ("B .", "b "),
        ("  3,5...  ", "3,5"),
    ],
)
def test_clean_text_quirks(text: str, cleaned: str) -> None:
    assert clean_text(text) == cleaned


def test_number_parsing_quirks() -> None:
    assert vsi_reward("12", "1,2", "object_counting") == 1.0  # commas vanish
    assert vsi_reward("35", "３５", "object_counting") == 1.0  # non-ASCII digits
    assert vsi_reward("163", "1_63", "object_size_estimation") == 1.0
    assert vsi_reward("n/a", "3", "object_counting") == 0.0
    assert vsi_reward("b ", "b", "route_planning") == 1.0


def test_unknown_question_type_raises() -> None:
    with pytest.raises(ValueError, match="Unsupported question type"):
        vsi_reward("a", "a", "object_colour")


# --------------------------------------------------------------------------------------------------------
# metrics


def test_metrics_match_fixture(results: list[dict[str, Any]], metrics: dict[str, Any]) -> None:
    assert_metrics_equal(calculate_metrics(results), metrics)


def test_metrics_from_rescored_rows_match_fixture(results: list[dict[str, Any]], metrics: dict[str, Any]) -> None:
    assert_metrics_equal(calculate_metrics(rescore(results)), metrics)


def test_empty_results_give_zeros() -> None:
    zero = {"micro": 0.0, "macro": 0.0}
    assert calculate_metrics([]) == {"per_question_type": {}, "acc": zero, "mra": zero, "all": zero}


def test_macro_leaves_out_missing_types() -> None:
    rows = [
        {"sample": {"question_type": "object_rel_direction_easy"}, "reward": 1.0},
        {"sample": {"question_type": "object_rel_direction_hard"}, "reward": 0.0},
        {"sample": {"question_type": "route_planning"}, "reward": 1.0},
        {"sample": {"question_type": "object_counting"}, "reward": 0.25},
    ]
    got = calculate_metrics(rows)
    assert got["acc"] == {"micro": pytest.approx(2 / 3), "macro": pytest.approx((0.5 + 1.0) / 2)}
    assert got["mra"] == {"micro": 0.25, "macro": 0.25}
    assert got["all"]["macro"] == pytest.approx((0.5 + 1.0 + 0.25) / 3)


# --------------------------------------------------------------------------------------------------------
# command line and table


@dataclass(frozen=True)
class Ran:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def run_cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch):
    """``python -m bench.vsibench ARGS`` from the repository root, in this process (a child Python only adds
    seconds of imports): exit code and what it printed."""
    monkeypatch.chdir(REPO_ROOT)

    def run(*args: str) -> Ran:
        capsys.readouterr()
        try:
            code = main(list(args))
        except SystemExit as exit_:  # argparse refusals
            code = exit_.code
        out, err = capsys.readouterr()
        return Ran(code, out, err)

    return run


@pytest.mark.parametrize("extra", [[], ["--stored-rewards"]], ids=["rescored", "stored-rewards"])
def test_cli_score(tmp_path: Path, metrics: dict[str, Any], extra: list[str], run_cli) -> None:
    out = tmp_path / "metrics.json"
    proc = run_cli("score", str(fixture_path("vsibench_metrics", "results.json")), "--out", str(out), *extra)
    assert proc.returncode == 0, proc.stderr
    assert "warning" not in proc.stderr
    assert_metrics_equal(json.loads(proc.stdout), metrics)
    assert_metrics_equal(json.loads(out.read_text()), metrics)


def test_cli_table(metrics: dict[str, Any], run_cli) -> None:
    path = fixture_path("vsibench_metrics", "metrics.json")
    proc = run_cli("table", str(path), f"mine={path}", "--per-type")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert lines[0].startswith("| Model | Micro Acc | Micro MRA | Micro All | Macro Acc | Macro MRA | Macro All |")
    assert len(lines) == 4
    for label, line in zip(("vsibench_metrics", "mine"), lines[2:], strict=True):
        assert line.startswith(f"| {label} | 63.33 | 51.56 | 56.27 | 60.58 | 51.57 | 56.08 |")
        assert "| 66.67 |" in line  # obj_appearance_order


def test_table_labels_and_missing_types() -> None:
    assert label_for(Path("runs/metrics_spatial-mllm.json")) == "spatial-mllm"
    partial = {
        "per_question_type": {"route_planning": {"score": 0.5, "count": 2}},
        "acc": {"micro": 0.5, "macro": 0.5},
        "mra": {"micro": 0.0, "macro": 0.0},
        "all": {"micro": 0.5, "macro": 0.5},
    }
    table = metrics_table([("x", partial)], per_type=True)
    assert "| x | 50.00 | 0.00 | 50.00 | 50.00 | 0.00 | 50.00 |" in table
    assert table.count(" - |") == 9


def test_cli_run_requires_server_data_and_output(run_cli) -> None:
    proc = run_cli("run", "--model", "whatever")
    assert proc.returncode == 2
    assert "the following arguments are required: --base-url, --annotations, --videos, --out" in proc.stderr

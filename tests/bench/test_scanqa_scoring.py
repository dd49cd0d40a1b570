"""ScanQA scoring against the golden fixture computed with the seed's ``score_scanqa.py`` (scanqa_scoring): every
corpus metric and EM float-equal, and the scorer inputs (id rewrite, rstrip, duplicate handling) identical."""

from __future__ import annotations

import json
from typing import Any

import pytest
from conftest import fixture_path

from bench.scanqa.__main__ import main
from bench.scanqa.scoring import annotation_id, answers_by_id, is_exact_match, meteor_scores, scorer_inputs


@pytest.fixture(scope="module")
def golden() -> dict[str, Any]:
    folder = fixture_path("scanqa_scoring")
    return {
        "predictions": json.loads((folder / "predictions.json").read_text()),
        "annotation": json.loads((folder / "annotation.json").read_text()),
        "metrics": json.loads((folder / "metrics.json").read_text()),
        "paths": (folder / "predictions.json", folder / "annotation.json"),
    }


def test_score_command_prints_the_seeds_corpus_scores_exactly(golden, capsys) -> None:
    predictions, annotation = golden["paths"]
    assert main(["score", str(predictions), "--annotations", str(annotation)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == golden["metrics"]["corpus"]  # float equality for every metric, EM and the counts
    assert list(printed) == list(golden["metrics"]["corpus"])


def test_scorers_get_the_seeds_inputs(golden) -> None:
    gts, res, n_correct = scorer_inputs(golden["predictions"], answers_by_id(golden["annotation"]))
    assert gts == golden["metrics"]["gts"] and res == golden["metrics"]["res"]
    assert list(res) == golden["metrics"]["keys_in_scoring_order"]  # duplicates keep their first position
    answers = answers_by_id(golden["annotation"])
    per_prediction = [
        is_exact_match(p["pred_response"], answers[annotation_id(p["sample_id"])]) for p in golden["predictions"]
    ]
    assert per_prediction == golden["metrics"]["per_item"]["EM_per_prediction"]
    assert n_correct == golden["metrics"]["corpus"]["EM_n_correct"]


def test_id_rewrite_and_unknown_ids() -> None:
    assert annotation_id("val-scene0011_00-12_3") == "val-scene0011_00-12_0"
    assert annotation_id("val-scene0011_00-12_0") == "val-scene0011_00-12_0"
    answers = {"val-scene0011_00-12_0": ["white"]}
    with pytest.raises(KeyError, match="val-scene0099_00-1_0"):
        scorer_inputs([{"sample_id": "val-scene0099_00-1_2", "pred_response": "x"}], answers)


def test_a_line_break_in_a_prediction_does_not_break_meteor() -> None:
    gts = {"q_0": ["brown chair"], "r_0": ["brown chair"], "s_0": ["table"]}
    res = {"q_0": ["brown\nchair"], "r_0": ["brown chair"], "s_0": ["a table"]}
    _, per_item = meteor_scores(gts, res)
    assert len(per_item) == 3 and per_item[0] == per_item[1] > per_item[2] > 0

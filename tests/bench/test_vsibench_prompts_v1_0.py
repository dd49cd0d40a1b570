"""VSI-Bench as the v1.0 branch evaluates: its wording and answer extraction, and the switch between sets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.vsibench.prompt_sets import PROMPT_SETS, checkpoint_architectures, for_architectures
from bench.vsibench.prompts_v1_0 import MCA_SUFFIX, NA_SUFFIX, clean_text, question_text
from bench.vsibench.scoring import score_row


def test_multiple_choice_wording() -> None:
    sample = {"question": "Which is closer?", "question_type": "object_rel_distance", "options": ["A. sofa", "B. tv"]}
    expected = "Which is closer?Options:\nA. sofa\nB. tv\n Please answer with the option's letter from the given"
    assert question_text(sample).startswith(expected)
    assert question_text(sample).endswith(MCA_SUFFIX)


def test_numeric_wording() -> None:
    sample = {"question": "How many chair(s) are in this room?", "question_type": "object_counting"}
    assert question_text(sample) == "How many chair(s) are in this room?" + NA_SUFFIX
    assert NA_SUFFIX.startswith(" Please answer with the only numerical value (e.g., 42, 3.14, etc.)")


@pytest.mark.parametrize(
    ("text", "cleaned"),
    [
        ("<answer>B</answer>", "b"),
        ("<answer>1</answer> then <answer> 2.5 </answer>", "2.5"),
        ("no tags.", "no tags"),
        ("A.\nfront", "a. front"),  # a newline after a non-space becomes a space
        ("a \nb", "a b"),  # a newline after whitespace is dropped
        ("a\r\nb", "a b"),
        ("3  m..", "3  m"),  # runs of spaces are kept (v1.1 collapses them)
    ],
)
def test_extraction(text: str, cleaned: str) -> None:
    assert clean_text(text) == cleaned


def test_scoring_with_v1_0_extraction_differs_from_v1_1_where_the_branches_differ() -> None:
    sample = {"question_type": "object_rel_distance", "ground_truth": "A  B"}
    assert score_row(sample, "<answer>a  b</answer>", clean=clean_text)["reward"] == 1.0
    assert score_row(sample, "<answer>a  b</answer>")["cleaned_model_output"] == "a b"


def test_architecture_selects_the_set(tiny_checkpoint_v1_0: Path, tmp_path: Path) -> None:
    assert for_architectures(checkpoint_architectures(str(tiny_checkpoint_v1_0))) is PROMPT_SETS["v1.0"]
    (tmp_path / "config.json").write_text(json.dumps({"architectures": ["SpatialMLLMForConditionalGeneration"]}))
    assert for_architectures(checkpoint_architectures(str(tmp_path))) is PROMPT_SETS["v1.1"]
    assert checkpoint_architectures(str(tmp_path / "absent")) is None

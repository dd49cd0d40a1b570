"""The user turn of one VSI-Bench question, worded exactly as Spatial-MLLM's evaluation asks it.

The paper's numbers depend on the wording, so the text is the seed's (``src/evaluation/vsibench/eval_vsibench.py``,
commit 9fc4738): the question as given, for multiple choice an ``Options:`` block with one option per line, then
one of two fixed answer-format instructions. The video goes before the text, as in the seed's message
(:func:`bench.eval_runner.client.user_message`); the server applies the model's chat template, as the seed's
processor did.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bench.vsibench.scoring import MCA_QUESTION_TYPES, NA_QUESTION_TYPES

MCA_SUFFIX = "Answer with the option's letter from the given choices directly."
NA_SUFFIX = "Please answer the question using a single word or phrase."


def question_text(sample: Mapping[str, Any]) -> str:
    """The text part of the user turn; ValueError for an unknown type or a multiple-choice row without options."""
    question, qtype = sample["question"], sample["question_type"]
    if qtype in MCA_QUESTION_TYPES:
        options = sample.get("options") or []
        if not options:
            raise ValueError(f"question {sample.get('id')!r}: multiple-choice samples must include 'options'")
        return f"{question}\nOptions:\n" + "\n".join(options) + f"\n{MCA_SUFFIX}"
    if qtype in NA_QUESTION_TYPES:
        return f"{question}\n{NA_SUFFIX}"
    raise ValueError(f"question {sample.get('id')!r}: unknown question type {qtype!r}")

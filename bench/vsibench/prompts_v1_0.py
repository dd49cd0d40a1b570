"""VSI-Bench as the v1.0 branch evaluates ``Diankun/Spatial-MLLM-subset-sft`` (``evaluate/eval_vsibench.py`` and
``evaluate/utils.py`` on branch ``v1.0``, commit 3a8c647).

Wording: the question, for multiple choice directly followed by ``Options:`` and one option per line, then a
space and a per-type instruction asking for the answer inside ``<answer> </answer>`` tags. Extraction: the last
``<answer>`` block if any (else the whole text); a newline after whitespace is dropped, any other becomes a
space, runs of spaces are kept; then strip, trailing periods dropped, lowercase. Decoding: temperature 0.1,
top_p 0.001, 1024 new tokens, the same as v1.1's evaluation.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from bench.vsibench.prompts import compose

MCA_SUFFIX = (
    " Please answer with the option's letter from the given choices (e.g., A, B, etc.) within the <answer> </answer>"
    " tags."
)
NA_SUFFIX = " Please answer with the only numerical value (e.g., 42, 3.14, etc.) within the <answer> </answer> tags."

_ANSWER_BLOCK = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
# Per line-break character, in this order: dropped after whitespace, else replaced by a space.
_LINE_BREAK_RULES = tuple(
    (re.compile(rf"(?<=\s){c}"), re.compile(rf"(?<!\s){c}")) for c in (re.escape("\n"), re.escape("\r"))
)


def question_text(sample: Mapping[str, Any]) -> str:
    """The text part of the user turn; ValueError for an unknown type or a multiple-choice row without options."""
    return compose(
        sample,
        lambda question, options: f"{question}Options:\n" + "".join(f"{o}\n" for o in options) + MCA_SUFFIX,
        lambda question: question + NA_SUFFIX,
    )


def clean_text(text: str) -> str:
    """The v1.0 answer extraction (``clean_text`` in ``evaluate/utils.py``)."""
    blocks = _ANSWER_BLOCK.findall(text)
    if blocks:
        text = blocks[-1]
    for after_space, elsewhere in _LINE_BREAK_RULES:
        text = elsewhere.sub(" ", after_space.sub("", text))
    return text.strip().rstrip(".").lower()

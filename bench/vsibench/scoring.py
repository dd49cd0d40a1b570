"""VSI-Bench scoring with the exact semantics of Spatial-MLLM's evaluation code.

Numbers reported here must be comparable with the paper's, so answer cleaning, the reward and the
micro/macro aggregation follow ``src/evaluation/vsibench`` in diankun-wu/Spatial-MLLM (commit 9fc4738)
quirks included: the last ``<answer>`` block wins, all trailing periods go, commas are dropped before
``float()`` ("1,2" reads as 12), and the mean relative accuracy (MRA) is computed in float32 torch, which
moves threshold-boundary answers by 0.1 compared with float64. The golden fixture
``vsibench_metrics`` pins all of it. pandas is not needed: the aggregation is plain Python/numpy.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

REL_DIRECTION_TYPES: tuple[str, ...] = (
    "object_rel_direction_easy",
    "object_rel_direction_medium",
    "object_rel_direction_hard",
)
MCA_QUESTION_TYPES: tuple[str, ...] = (
    *REL_DIRECTION_TYPES,
    "object_rel_distance",
    "route_planning",
    "obj_appearance_order",
)
NA_QUESTION_TYPES: tuple[str, ...] = (
    "object_abs_distance",
    "object_counting",
    "object_size_estimation",
    "room_size_estimation",
)

_ANSWER_BLOCK = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
_WHITESPACE = re.compile(r"\s+")
# MRA thresholds 0.50, 0.55, ..., 0.95 exactly as float32 torch.arange produces them (0.55000001, ...).
_MRA_THRESHOLDS = torch.arange(0.5, 0.95 + 0.05 / 2, 0.05, dtype=torch.float32)


# --------------------------------------------------------------------------------------------------------
# per answer


def extract_answer(text: str) -> str:
    """Content of the last closed ``<answer>...</answer>`` block, else the whole text (tags included)."""
    blocks = _ANSWER_BLOCK.findall(text)
    return blocks[-1] if blocks else text


def clean_text(text: str) -> str:
    """Normalise an answer: last answer block, newlines to spaces, collapse whitespace, strip, drop trailing
    periods, lowercase. strip runs before rstrip('.'), so "B ." becomes "b " (the MCA compare strips again).
    """
    cleaned = extract_answer(text).replace("\n", " ").replace("\r", " ")
    return _WHITESPACE.sub(" ", cleaned).strip().rstrip(".").lower()


def parse_number(text: str) -> float | None:
    """Python ``float()`` after removing every comma ("1,250" -> 1250.0, "1,2" -> 12.0); None if invalid.

    ``float()`` also takes "nan", "inf", exponents, "+", digit underscores and non-ASCII digits.
    """
    try:
        return float(text.replace(",", ""))
    except ValueError:
        return None


def mean_relative_accuracy(pred: float, target: float) -> float:
    """Share of thresholds 0.50..0.95 with ``|pred - target| / (|target| + 1e-8) < 1 - threshold``.

    Computed in float32 torch like the reference, so results are float32 values (0.699999988..., not 0.7);
    NaN anywhere gives 0.0.
    """
    pred_t = torch.as_tensor(pred, dtype=torch.float32)
    target_t = torch.as_tensor(target, dtype=torch.float32)
    rel_error = torch.abs(pred_t - target_t) / (torch.abs(target_t) + 1e-8)
    return (rel_error < (1 - _MRA_THRESHOLDS)).float().mean().item()


def vsi_reward(clean_gt: str, clean_pred: str, question_type: str) -> float:
    """Reward of one cleaned answer: exact match for multiple choice, MRA for numeric answers."""
    if question_type in MCA_QUESTION_TYPES:
        return 1.0 if clean_pred.strip() == clean_gt.strip() else 0.0
    if question_type in NA_QUESTION_TYPES:
        gt, pred = parse_number(clean_gt), parse_number(clean_pred)
        if gt is None or pred is None:
            return 0.0
        return mean_relative_accuracy(pred, gt)
    raise ValueError(f"Unsupported question type: {question_type}")


def score_row(
    sample: Mapping[str, Any], model_output: str, prompt: str = "", clean: Callable[[str], str] = clean_text
) -> dict[str, Any]:
    """One results row in the reference's format (what its ``postprocess_batch`` appends); ``clean`` is the
    answer extraction of the evaluation being reproduced (v1.1's by default)."""
    clean_pred = clean(model_output)
    clean_gt = clean(sample.get("ground_truth", ""))
    reward = vsi_reward(clean_gt, clean_pred, sample["question_type"])
    return {
        "sample": dict(sample),
        "prompt": prompt,
        "model_output": model_output,
        "cleaned_model_output": clean_pred,
        "cleaned_gt_answer": clean_gt,
        "reward": reward,
        "correct": reward == 1.0,
    }


def rescore(results: Iterable[Mapping[str, Any]], clean: Callable[[str], str] = clean_text) -> list[dict[str, Any]]:
    """Recompute cleaned strings and rewards of stored rows from their sample and model output."""
    return [score_row(row["sample"], row["model_output"], row.get("prompt", ""), clean) for row in results]


# --------------------------------------------------------------------------------------------------------
# aggregation


def _mean(values: Sequence[float]) -> float:
    """pandas ``Series.mean()``: float64 mean skipping NaN (None counts as NaN); NaN when nothing is left."""
    arr = np.array([math.nan if v is None else v for v in values], dtype=np.float64)
    arr = arr[~np.isnan(arr)]
    return float(arr.mean()) if arr.size else math.nan


def _safe_mean(values: Sequence[float]) -> float:
    """The reference's ``safe_mean``: 0.0 for no rows at all."""
    return _mean(values) if len(values) else 0.0


def calculate_metrics(results: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Per-type scores and micro/macro acc (multiple choice), mra (numeric) and all, as the reference does.

    micro: mean over rows. macro: the three relative-direction types present are first averaged into one
    "direction" score, then the type scores are averaged; types without rows are left out.
    """
    if not results:
        zero = {"micro": 0.0, "macro": 0.0}
        return {"per_question_type": {}, "acc": dict(zero), "mra": dict(zero), "all": dict(zero)}

    rewards = [row.get("reward", 0.0) for row in results]
    qtypes = [row["sample"].get("question_type") for row in results]
    is_na = [q in NA_QUESTION_TYPES for q in qtypes]

    groups: dict[str, list[float]] = {}
    for reward, qtype in zip(rewards, qtypes, strict=True):
        if qtype is not None:  # pandas groupby drops missing keys
            groups.setdefault(qtype, []).append(reward)
    per_qtype = {q: {"score": _mean(groups[q]), "count": len(groups[q])} for q in sorted(groups)}

    micro_acc = _safe_mean([r for r, na in zip(rewards, is_na, strict=True) if not na])
    micro_mra = _safe_mean([r for r, na in zip(rewards, is_na, strict=True) if na])
    micro_all = _safe_mean(rewards)

    direction = [per_qtype[q]["score"] for q in REL_DIRECTION_TYPES if q in per_qtype]
    direction_head = [_safe_mean(direction)] if direction else []
    acc_scores = direction_head + [
        s["score"] for q, s in per_qtype.items() if q not in NA_QUESTION_TYPES and q not in REL_DIRECTION_TYPES
    ]
    mra_scores = [s["score"] for q, s in per_qtype.items() if q in NA_QUESTION_TYPES]
    all_scores = direction_head + [s["score"] for q, s in per_qtype.items() if q not in REL_DIRECTION_TYPES]

    return {
        "per_question_type": per_qtype,
        "acc": {"micro": micro_acc, "macro": _safe_mean(acc_scores)},
        "mra": {"micro": micro_mra, "macro": _safe_mean(mra_scores)},
        "all": {"micro": micro_all, "macro": _safe_mean(all_scores)},
    }

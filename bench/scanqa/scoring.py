"""ScanQA scores exactly as the seed's ``src/evaluation/scanqa/score_scanqa.py`` computes them.

The four scorers are coco-caption's, from the maintained ``pycocoevalcap==1.2`` (byte-identical jar and data,
identical numbers on the golden fixture); what this module adds is the seed's bookkeeping around them:

* **Id rewrite.** A prediction's ``sample_id`` has its last ``_`` component replaced by ``0``
  (``val-scene0011_00-12_3`` -> ``val-scene0011_00-12_0``); the references are that annotation row's
  ``metadata.answers``. An id with no annotation row is an error.
* **Candidate.** The prediction with all trailing periods stripped (``rstrip(".")``), nothing else: no
  tokenisation, no lowercasing (only METEOR normalises, inside Java).
* **Duplicates.** Predictions are collected in dicts: when two rewrite to the same id the later one wins, at the
  position of the first. ``count`` is the number of distinct ids.
* **EM.** The raw prediction (not stripped) is in the answer list, divided by the number of predictions,
  duplicates included.

One deviation, where the seed breaks: METEOR talks to Java one line per item, so a line break inside a
prediction would desynchronise it; line breaks (``\n``, ``\r``) are sent to METEOR as spaces.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

METRIC_NAMES = ("CIDEr", "BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "METEOR", "ROUGE-L")
LINE_BREAK = re.compile(r"\r\n|\r|\n")  # what Java's readLine splits on
JAVA_HINT = "METEOR runs Meteor 1.5 in Java: install a Java runtime (e.g. apt-get install default-jre-headless)"


def annotation_id(sample_id: str) -> str:
    """The annotation id a prediction is scored against: the last ``_`` component replaced by ``0``."""
    return "_".join([*sample_id.split("_")[:-1], "0"])


def answers_by_id(annotations: Iterable[Mapping[str, Any]]) -> dict[str, list[str]]:
    """``id`` -> ``metadata.answers`` of every annotation row (a later duplicate row wins, as in the seed)."""
    return {row["id"]: list(row["metadata"]["answers"]) for row in annotations}


def is_exact_match(prediction: str, answers: Sequence[str]) -> bool:
    """The seed's EM: the raw prediction is one of the answers (case, whitespace and periods all count)."""
    return prediction in answers


def scorer_inputs(
    predictions: Sequence[Mapping[str, Any]], answers: Mapping[str, list[str]]
) -> tuple[dict[str, list[str]], dict[str, list[str]], int]:
    """(references, candidates, exact matches) keyed by rewritten id, in the seed's dict order."""
    gts: dict[str, list[str]] = {}
    res: dict[str, list[str]] = {}
    n_correct = 0
    for item in predictions:
        key = annotation_id(item["sample_id"])
        if key not in answers:
            raise KeyError(f"prediction {item['sample_id']!r}: no annotation row with id {key!r}")
        res[key] = [item["pred_response"].rstrip(".")]
        gts[key] = answers[key]
        n_correct += is_exact_match(item["pred_response"], answers[key])
    return gts, res, n_correct


def meteor_scores(gts: dict[str, list[str]], res: dict[str, list[str]]) -> tuple[float, list[float]]:
    """Meteor 1.5's corpus score (from the aggregated statistics, not the mean) and per-item scores."""
    from pycocoevalcap.meteor.meteor import Meteor

    if shutil.which("java") is None:
        raise SystemExit(f"java not found on PATH: {JAVA_HINT}.")
    one_line = {key: [LINE_BREAK.sub(" ", text) for text in texts] for key, texts in res.items()}
    scorer = Meteor()
    try:
        score, per_item = scorer.compute_score(gts, one_line)
    finally:
        del scorer  # its __del__ ends the Java process
    return float(score), [float(v) for v in per_item]


def score_predictions(predictions: Sequence[Mapping[str, Any]], answers: Mapping[str, list[str]]) -> dict[str, Any]:
    """The corpus scores (raw, not x100; EM a fraction), named as the golden fixture's ``metrics.json`` names them."""
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    if not predictions:
        raise ValueError("no predictions to score")
    gts, res, n_correct = scorer_inputs(predictions, answers)
    cider, _ = Cider().compute_score(gts, res)
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    rouge, _ = Rouge().compute_score(gts, res)
    return {
        "count": len(gts),
        "n_predictions": len(predictions),
        "CIDEr": float(cider),
        **{f"BLEU-{n}": float(value) for n, value in enumerate(bleu, start=1)},
        "METEOR": meteor_scores(gts, res)[0],
        "ROUGE-L": float(rouge),
        "EM": n_correct / len(predictions),
        "EM_n_correct": n_correct,
    }

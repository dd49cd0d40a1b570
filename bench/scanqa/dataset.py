"""ScanQA as the seed reads it: ``scanqa_val_llava_style.json``, a JSON list of LLaVA-style rows.

Each row has ``id`` (e.g. ``val-scene0011_00-12_0``), ``video`` (a path whose last component names the scene),
``conversations`` (the first turn is the question the model is asked, verbatim, ``<video>\\n`` prefix included;
the second the reference answer) and ``metadata`` (``answers``, the references scoring uses, plus ``dataset`` and
``question_type``). The seed opens the video ``VIDEOS/<last component of video>.mp4`` (``eval_scanqa.py``,
``build_user_message``), ScanNet's preprocessed scene videos.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def load_questions(path: Path) -> list[dict[str, Any]]:
    """The rows in file order, checked up front (fields present, unique ids) so that a data problem stops the run
    before any request."""
    if not path.is_file():
        raise SystemExit(f"annotation file not found: {path}")
    rows = json.loads(path.read_text())
    if not isinstance(rows, list):
        raise SystemExit(f"{path}: expected a JSON list of rows (scanqa_val_llava_style.json)")
    seen: set[str] = set()
    for index, row in enumerate(rows):
        problem = _row_problem(row)
        if problem:
            raise SystemExit(f"{path}: row {index} {problem}")
        if row["id"] in seen:
            raise SystemExit(f"{path}: duplicate id {row['id']!r} (each row is resumed by its id)")
        seen.add(row["id"])
    return rows


def _row_problem(row: Any) -> str | None:
    if not isinstance(row, dict):
        return "is not an object"
    missing = [k for k in ("id", "video", "conversations", "metadata") if k not in row]
    if missing:
        return f"lacks {', '.join(missing)}"
    if not row["conversations"] or not isinstance(row["conversations"][0].get("value"), str):
        return "has no question (conversations[0].value)"
    if not row["metadata"].get("answers"):
        return "has no metadata.answers"
    return None


def question_text(row: Mapping[str, Any]) -> str:
    """The text the seed asks: the first conversation turn, unchanged."""
    return row["conversations"][0]["value"]


def video_key(row: Mapping[str, Any]) -> str:
    """The scene video a row asks about: the last component of its ``video`` path."""
    return str(row["video"]).split("/")[-1]


def video_path(videos: Path, row: Mapping[str, Any]) -> Path:
    """``VIDEOS/<scene>.mp4``; FileNotFoundError when it is not there."""
    path = videos / f"{video_key(row)}.mp4"
    if not path.is_file():
        raise FileNotFoundError(f"video not found: {path}")
    return path


def result_row(row: Mapping[str, Any], model_output: str, prompt: str) -> dict[str, Any]:
    """One row of the seed's results file (``postprocess_batch`` in eval_scanqa.py); ``score`` reads
    ``sample_id`` and ``pred_response``. ``prompt`` is the user text sent (the seed stored the chat-template text,
    which the server renders here)."""
    metadata = row["metadata"]
    turns = row["conversations"]
    return {
        "dataset": metadata.get("dataset"),
        "sample_id": row["id"],
        "prompt": prompt,
        "pred_response": model_output.strip(),
        "gt_response": turns[1]["value"] if len(turns) > 1 else None,
        "question_type": metadata.get("question_type"),
    }

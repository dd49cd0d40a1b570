"""VSI-Bench's output folder: the shared layout (:mod:`bench.eval_runner.store`), rows tracked by their sample's id."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bench.eval_runner import store
from bench.vsibench.dataset import question_key


def row_key(row: Mapping[str, Any]) -> str:
    """The question a results row answers."""
    return question_key(row["sample"])


class RunDir(store.RunDir):
    def __init__(self, out: Path) -> None:
        super().__init__(out, row_key)

"""``python -m bench.scanqa run``: every ScanQA question through the API, on the shared runner
(:mod:`bench.eval_runner.runner`: uploads once, grouped by video, concurrent, resumable, progress bar).

What the seed's ``eval_scanqa.py`` fixes is kept: the first conversation turn as the question, ``nframes=16``
uniformly sampled frames resized to exactly 480x640 (``resized_height``/``resized_width``, rounded to multiples of
28 as qwen-vl-utils rounds them: 476x644), and ``max_new_tokens=256, temperature=0.1, top_p=0.001``.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from bench.eval_runner import runner as shared
from bench.eval_runner.client import Decoding
from bench.eval_runner.runner import RunStats
from bench.eval_runner.store import RunDir
from bench.scanqa import dataset
from bench.scanqa.scoring import JAVA_HINT, METRIC_NAMES, annotation_id, answers_by_id, score_predictions

SEED_DECODING = Decoding(max_tokens=256)
SEED_FRAME_SIZE = (480, 640)  # (resized_height, resized_width) in the seed's video message


@dataclass(frozen=True, kw_only=True)
class RunOptions(shared.RunOptions):
    num_frames: int = 16
    frame_size: tuple[int, int] = SEED_FRAME_SIZE
    decoding: Decoding = SEED_DECODING


class LiveExactMatch:
    """The seed's EM over the answers so far, for the progress bar."""

    def __init__(self, answers: Mapping[str, list[str]]) -> None:
        self.answers = answers
        self.correct = 0
        self.count = 0

    def add(self, row: Mapping[str, Any]) -> None:
        self.count += 1
        self.correct += row["pred_response"] in self.answers[annotation_id(row["sample_id"])]

    def postfix(self) -> dict[str, str]:
        return {"EM": f"{100 * self.correct / self.count:.1f}" if self.count else "-"}


def row_key(row: Mapping[str, Any]) -> str:
    return row["sample_id"]


@dataclass(frozen=True)
class ScanQA:
    """ScanQA for the shared runner."""

    videos: Path
    answers: Mapping[str, list[str]]
    label: str
    video_layout: str = "<scene>.mp4, the last component of each row's video"

    def question_key(self, question: dict[str, Any]) -> str:
        return question["id"]

    def row_key(self, row: Mapping[str, Any]) -> str:
        return row_key(row)

    def video_key(self, question: dict[str, Any]) -> str:
        return dataset.video_key(question)

    def video_path(self, question: dict[str, Any]) -> Path:
        return dataset.video_path(self.videos, question)

    def prompt(self, question: dict[str, Any]) -> str:
        return dataset.question_text(question)

    def result_row(self, question: dict[str, Any], output: str, prompt: str) -> dict[str, Any]:
        return dataset.result_row(question, output, prompt)

    def metrics(self, rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
        return score_predictions(rows, self.answers) if rows else {}

    def live_score(self) -> LiveExactMatch:
        return LiveExactMatch(self.answers)


async def run_benchmark(opts: RunOptions) -> RunStats:
    """Ask every not-yet-answered question, then write results.json and metrics.json for the evaluated set."""
    if shutil.which("java") is None:
        raise SystemExit(f"java not found on PATH: {JAVA_HINT}.")
    rows = dataset.load_questions(opts.annotations)
    questions = rows if opts.limit is None else rows[: opts.limit]
    height, width = opts.frame_size
    benchmark = ScanQA(opts.videos, answers_by_id(rows), label=f"ScanQA {opts.num_frames}f {height}x{width}")
    sampling = {"strategy": "uniform", "num_frames": opts.num_frames, "resized_height": height, "resized_width": width}
    return await shared.evaluate(opts, benchmark, questions, sampling)


def metrics_line(metrics: Mapping[str, Any]) -> str:
    """The scores as the seed prints them (x100; EM a fraction), as one markdown table row."""
    if not metrics:
        return "no answers yet\n"
    names = [*METRIC_NAMES, "EM"]
    values = [f"{100 * metrics[n]:.2f}" for n in METRIC_NAMES] + [f"{metrics['EM']:.4f}"]
    return "\n".join(
        ["| count | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|",
         f"| {metrics['count']} | " + " | ".join(values) + " |", ""]
    )  # fmt: skip


def print_summary(opts: RunOptions, stats: RunStats, out: TextIO | None = None) -> None:
    """Wall time, throughput, failures and the scores."""
    store = RunDir(opts.out, row_key)
    shared.print_summary(store, stats, metrics_line(shared.read_metrics(store)), out)

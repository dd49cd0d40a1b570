"""``python -m bench.vsibench run``: every VSI-Bench question through the API, on the shared runner
(:mod:`bench.eval_runner.runner`: uploads once, grouped by video, concurrent, resumable, progress bar).

This module supplies what is VSI-Bench's own: videos at ``<dataset>/<scene_name>.mp4``, the seed's prompt, its
scored results rows and metrics.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from bench.eval_runner import runner as shared
from bench.eval_runner.runner import RunStats
from bench.vsibench.dataset import FrameFoldersUnsupported, load_questions, question_key, video_key, video_path
from bench.vsibench.prompts import question_text
from bench.vsibench.scoring import NA_QUESTION_TYPES, calculate_metrics, score_row
from bench.vsibench.store import RunDir, row_key
from bench.vsibench.table import metrics_table


@dataclass(frozen=True, kw_only=True)
class RunOptions(shared.RunOptions):
    strategy: str = "uniform"
    num_frames: int = 16


class LiveScore:
    """Running micro scores for the progress bar (the final numbers come from ``calculate_metrics``)."""

    def __init__(self) -> None:
        self.sums = {"acc": 0.0, "mra": 0.0}
        self.counts = {"acc": 0, "mra": 0}

    def add(self, row: Mapping[str, Any]) -> None:
        kind = "mra" if row["sample"]["question_type"] in NA_QUESTION_TYPES else "acc"
        self.sums[kind] += row["reward"]
        self.counts[kind] += 1

    def postfix(self) -> dict[str, str]:
        def pct(total: float, n: int) -> str:
            return f"{100 * total / n:.1f}" if n else "-"

        n_all = self.counts["acc"] + self.counts["mra"]
        return {
            "acc": pct(self.sums["acc"], self.counts["acc"]),
            "mra": pct(self.sums["mra"], self.counts["mra"]),
            "all": pct(self.sums["acc"] + self.sums["mra"], n_all),
        }


@dataclass(frozen=True)
class VSIBench:
    """VSI-Bench for the shared runner."""

    videos: Path
    label: str
    video_layout: str = "<dataset>/<scene_name>.mp4"

    def question_key(self, question: dict[str, Any]) -> str:
        return question_key(question)

    def row_key(self, row: Mapping[str, Any]) -> str:
        return row_key(row)

    def video_key(self, question: dict[str, Any]) -> str:
        return video_key(question)

    def video_path(self, question: dict[str, Any]) -> Path:
        try:
            return video_path(self.videos, question)
        except FrameFoldersUnsupported as exc:
            raise SystemExit(str(exc)) from exc

    def prompt(self, question: dict[str, Any]) -> str:
        return question_text(question)

    def result_row(self, question: dict[str, Any], output: str, prompt: str) -> dict[str, Any]:
        return score_row(question, output, prompt)

    def metrics(self, rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
        return calculate_metrics(rows)

    def live_score(self) -> LiveScore:
        return LiveScore()


async def run_benchmark(opts: RunOptions) -> RunStats:
    """Ask every not-yet-answered question, then write results.json and metrics.json for the evaluated set."""
    questions = load_questions(opts.annotations, opts.limit)
    benchmark = VSIBench(opts.videos, label=f"VSI-Bench {opts.strategy} {opts.num_frames}f")
    sampling = {"strategy": opts.strategy, "num_frames": opts.num_frames}
    return await shared.evaluate(opts, benchmark, questions, sampling)


def print_summary(opts: RunOptions, stats: RunStats, out: TextIO | None = None) -> None:
    """Wall time, throughput, failures and the one-row metrics table."""
    store = RunDir(opts.out)
    table = metrics_table([(opts.out.resolve().name, shared.read_metrics(store))])
    shared.print_summary(store, stats, table, out)

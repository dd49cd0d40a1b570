"""``python -m bench.vsibench run``: every VSI-Bench question through the API, concurrently and resumably.

Questions are grouped by video (first-appearance order), each video's first question alone before the others
(:mod:`bench.vsibench.schedule`), so a video is sampled once and its other questions arrive while its frames and
embeddings are in the server's caches; ``--concurrency`` workers pull from that schedule. Each answer is scored
and appended to ``partial.jsonl`` the moment it arrives, so an interruption loses only requests in flight; a
failure (after the SDK's own retries) is recorded and the run goes on. At the end the answered rows become
``results.json`` and ``metrics.json`` (see :mod:`bench.vsibench.store`).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TextIO

import openai
from tqdm import tqdm

from bench.vsibench.client import Decoding, QuestionAsker, make_client, resolve_model
from bench.vsibench.dataset import (
    FrameFoldersUnsupported,
    load_questions,
    question_key,
    video_key,
    video_path,
)
from bench.vsibench.prompt_sets import PROMPT_SETS, served_prompt_set
from bench.vsibench.schedule import VideoScheduler
from bench.vsibench.scoring import NA_QUESTION_TYPES, calculate_metrics, score_row
from bench.vsibench.store import RunDir
from bench.vsibench.table import metrics_table
from bench.vsibench.uploads import VideoFiles


@dataclass(frozen=True)
class RunOptions:
    base_url: str
    annotations: Path
    videos: Path
    out: Path
    strategy: str = "uniform"
    num_frames: int = 16
    concurrency: int = 16
    limit: int | None = None
    api_key: str = "EMPTY"
    model: str | None = None
    decoding: Decoding = field(default_factory=Decoding)
    prompts: str | None = None  # "v1.1" or "v1.0" (prompt_sets.PROMPT_SETS); None: the served architecture's
    max_retries: int = 8
    timeout_s: float = 600.0
    progress: bool = True


@dataclass
class RunStats:
    """What one invocation did (also appended to ``run.json``)."""

    questions: int = 0  # in the evaluated set (after --limit)
    already_answered: int = 0  # skipped: answered by an earlier run
    answered: int = 0  # by this run
    failed: int = 0
    uploads: int = 0
    wall_s: float = 0.0
    requests_per_s: float = 0.0
    concurrency: int = 0
    prompt_tokens: int = 0
    cached_prompt_tokens: int = 0
    completion_tokens: int = 0
    errors: list[str] = field(default_factory=list)  # the first few, for the summary


class LiveScore:
    """Running micro scores for the progress bar (the final numbers come from ``calculate_metrics``)."""

    def __init__(self) -> None:
        self.sums = {"acc": 0.0, "mra": 0.0}
        self.counts = {"acc": 0, "mra": 0}
        self.failed = 0

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
            "fail": str(self.failed),
        }


def _locate_videos(videos: Path, questions: Sequence[dict[str, Any]]) -> dict[str, Path | Exception]:
    """Each pending video's path, or the error its questions will be failed with."""
    located: dict[str, Path | Exception] = {}
    for question in questions:
        key = video_key(question)
        if key in located:
            continue
        try:
            located[key] = video_path(videos, question)
        except FrameFoldersUnsupported as exc:
            raise SystemExit(str(exc)) from exc
        except FileNotFoundError as exc:
            located[key] = exc
    if located and all(isinstance(v, Exception) for v in located.values()):
        raise SystemExit(f"none of the {len(located)} videos is under {videos} (expected <dataset>/<scene_name>.mp4)")
    return located


def _is_missing_file(exc: openai.NotFoundError, file_id: str) -> bool:
    return getattr(exc, "param", None) == "file_id" or file_id in str(exc)


async def run_benchmark(opts: RunOptions) -> RunStats:
    """Ask every not-yet-answered question, then write results.json and metrics.json for the evaluated set."""
    questions = load_questions(opts.annotations, opts.limit)
    store = RunDir(opts.out)
    answers = store.load_answers()
    selected = {question_key(q) for q in questions}
    pending = [q for q in questions if question_key(q) not in answers]
    located = _locate_videos(opts.videos, pending)

    client = make_client(opts.base_url, opts.api_key, opts.max_retries, opts.timeout_s)
    stats = RunStats(questions=len(questions), already_answered=len(questions) - len(pending))
    stats.concurrency = opts.concurrency
    live = LiveScore()
    for key, row in answers.items():
        if key in selected:
            live.add(row)
    try:
        model = await resolve_model(client, opts.model)
        prompt_set = PROMPT_SETS[opts.prompts] if opts.prompts else await served_prompt_set(client, model)
        asker = QuestionAsker(client, model, opts.strategy, opts.num_frames, opts.decoding)
        # v1.1 runs record no prompt set, so folders written before the switch existed still resume.
        store.claim(asker.settings() | ({"prompts": prompt_set.name} if prompt_set.name != "v1.1" else {}))
        files = VideoFiles(client, store.load_files(), store.save_files, max_parallel_uploads=min(4, opts.concurrency))
        schedule = VideoScheduler(pending)
        bar = tqdm(
            total=len(questions),
            initial=stats.already_answered,
            desc=f"VSI-Bench {opts.strategy} {opts.num_frames}f",
            unit="q",
            disable=not opts.progress,
            dynamic_ncols=True,
        )
        bar.set_postfix(live.postfix(), refresh=False)

        async def answer(question: dict[str, Any]) -> dict[str, Any]:
            key = video_key(question)
            path = located[key]
            if isinstance(path, Exception):
                raise path
            text = prompt_set.question_text(question)
            file_id = await files.file_id(key, path)
            try:
                reply = await asker.ask(file_id, text)
            except openai.NotFoundError as exc:
                if not _is_missing_file(exc, file_id):
                    raise
                reply = await asker.ask(await files.replace(key, path, file_id), text)  # expired mid-run
            stats.prompt_tokens += reply.prompt_tokens
            stats.cached_prompt_tokens += reply.cached_tokens
            stats.completion_tokens += reply.completion_tokens
            return score_row(question, reply.text, text, prompt_set.clean_text)

        async def worker() -> None:
            while (question := await schedule.next()) is not None:
                try:
                    row = await answer(question)
                except Exception as exc:  # one question's failure must not end the run
                    live.failed += 1
                    stats.failed += 1
                    message = f"{type(exc).__name__}: {exc}"
                    if len(stats.errors) < 5:
                        stats.errors.append(f"id {question['id']}: {message}")
                    store.append_failure(
                        {"id": question["id"], "video": video_key(question), "error": message, "time": time.time()}
                    )
                else:
                    store.append_answer(row)
                    answers[question_key(question)] = row
                    live.add(row)
                    stats.answered += 1
                await schedule.done(question)
                bar.set_postfix(live.postfix(), refresh=False)
                bar.update(1)

        started = time.perf_counter()
        try:
            await asyncio.gather(*(worker() for _ in range(max(1, min(opts.concurrency, len(pending))))))
        finally:
            bar.close()
            store.close()
        stats.wall_s = time.perf_counter() - started
        stats.requests_per_s = stats.answered / stats.wall_s if stats.wall_s > 0 else 0.0
        stats.uploads = files.uploaded
    finally:
        await client.close()

    rows = [answers[question_key(q)] for q in questions if question_key(q) in answers]
    store.write_outputs(rows, calculate_metrics(rows))
    store.add_run({"limit": opts.limit, "finished_at": time.time(), **asdict(stats)})
    return stats


def print_summary(opts: RunOptions, stats: RunStats, out: TextIO | None = None) -> None:
    """Wall time, throughput, failures and the one-row metrics table."""
    out = out or sys.stdout
    store = RunDir(opts.out)
    done = stats.already_answered + stats.answered
    print(
        f"answered {stats.answered} questions in {stats.wall_s:.1f} s wall: {stats.requests_per_s:.2f} requests/s at "
        f"concurrency {stats.concurrency} ({stats.uploads} uploads, {stats.already_answered} answered earlier, "
        f"{stats.failed} failed; {done}/{stats.questions} done)",
        file=out,
    )
    if stats.prompt_tokens:
        print(
            f"tokens: {stats.prompt_tokens} prompt ({stats.cached_prompt_tokens} from the prefix cache), "
            f"{stats.completion_tokens} completion",
            file=out,
        )
    for error in stats.errors:
        print(f"  failed: {error}", file=out)
    if stats.failed:
        print(f"{stats.failed} questions failed (see {store.failures}); run again to retry them", file=out)
    metrics = json.loads(store.metrics.read_text())
    out.write(metrics_table([(opts.out.resolve().name, metrics)]))
    print(f"results: {store.results}\nmetrics: {store.metrics}", file=out)

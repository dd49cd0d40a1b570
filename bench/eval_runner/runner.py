"""The shared run loop: every pending question of a benchmark through the API, concurrently and resumably.

Questions are grouped by video (first-appearance order), each video's first question alone before the others
(:mod:`bench.eval_runner.schedule`), so a video is sampled once and its other questions arrive while its frames
and embeddings are in the server's caches; ``concurrency`` workers pull from that schedule. Each answer becomes
the benchmark's results row and is appended to ``partial.jsonl`` the moment it arrives, so an interruption loses
only requests in flight; a failure (after the SDK's own retries) is recorded and the run goes on. At the end the
answered rows become ``results.json`` and ``metrics.json`` (see :mod:`bench.eval_runner.store`).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol, TextIO

import openai
from tqdm import tqdm

from bench.eval_runner.client import Decoding, QuestionAsker, make_client, resolve_model
from bench.eval_runner.schedule import VideoScheduler
from bench.eval_runner.store import RunDir
from bench.eval_runner.uploads import VideoFiles

Question = dict[str, Any]
Row = dict[str, Any]


class LiveScore(Protocol):
    """Running scores for the progress bar (the final numbers come from ``Benchmark.metrics``)."""

    def add(self, row: Mapping[str, Any]) -> None: ...

    def postfix(self) -> dict[str, str]: ...


class Benchmark(Protocol):
    """What a benchmark supplies: where each question's video is, what is asked, and how answers are recorded."""

    label: str  # progress bar description
    video_layout: str  # where videos are expected, for the error when none is found

    def question_key(self, question: Question) -> str: ...

    def row_key(self, row: Mapping[str, Any]) -> str: ...

    def video_key(self, question: Question) -> str: ...

    def video_path(self, question: Question) -> Path:
        """The video file; FileNotFoundError fails only this video's questions, other errors stop the run."""
        ...

    def prompt(self, question: Question) -> str: ...

    def result_row(self, question: Question, output: str, prompt: str) -> Row: ...

    def metrics(self, rows: Sequence[Row]) -> dict[str, Any]: ...

    def live_score(self) -> LiveScore: ...


@dataclass(frozen=True)
class EvalSettings:
    """Everything about a run besides the benchmark and its questions."""

    out: Path
    sampling: Mapping[str, Any]  # the request's ``video_sampling``
    decoding: Decoding
    model: str | None = None
    concurrency: int = 16
    limit: int | None = None
    progress: bool = True


@dataclass(frozen=True, kw_only=True)
class RunOptions:
    """The options every benchmark's run takes; a benchmark subclasses it with its frames (and decoding default)."""

    base_url: str
    annotations: Path
    videos: Path
    out: Path
    concurrency: int = 16
    limit: int | None = None
    api_key: str = "EMPTY"
    model: str | None = None
    decoding: Decoding = field(default_factory=Decoding)
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


def _locate_videos(benchmark: Benchmark, questions: Sequence[Question]) -> dict[str, Path | Exception]:
    """Each pending video's path, or the error its questions will be failed with."""
    located: dict[str, Path | Exception] = {}
    for question in questions:
        key = benchmark.video_key(question)
        if key in located:
            continue
        try:
            located[key] = benchmark.video_path(question)
        except FileNotFoundError as exc:
            located[key] = exc
    if located and all(isinstance(v, Exception) for v in located.values()):
        raise SystemExit(f"none of the {len(located)} videos is there (expected {benchmark.video_layout})")
    return located


def _is_missing_file(exc: openai.NotFoundError, file_id: str) -> bool:
    return getattr(exc, "param", None) == "file_id" or file_id in str(exc)


async def run_questions(
    client: openai.AsyncOpenAI, benchmark: Benchmark, questions: Sequence[Question], settings: EvalSettings
) -> RunStats:
    """Ask every question not answered in ``settings.out`` yet, then write results.json and metrics.json for
    ``questions`` (the caller closes ``client``)."""
    store = RunDir(settings.out, benchmark.row_key)
    answers = store.load_answers()
    selected = {benchmark.question_key(q) for q in questions}
    pending = [q for q in questions if benchmark.question_key(q) not in answers]
    located = _locate_videos(benchmark, pending)

    stats = RunStats(questions=len(questions), already_answered=len(questions) - len(pending))
    stats.concurrency = settings.concurrency
    live = benchmark.live_score()
    for key, row in answers.items():
        if key in selected:
            live.add(row)
    model = await resolve_model(client, settings.model)
    asker = QuestionAsker(client, model, settings.sampling, settings.decoding)
    store.claim(asker.settings())
    files = VideoFiles(client, store.load_files(), store.save_files, max_parallel_uploads=min(4, settings.concurrency))
    schedule = VideoScheduler(pending, benchmark.video_key)
    bar = tqdm(
        total=len(questions),
        initial=stats.already_answered,
        desc=benchmark.label,
        unit="q",
        disable=not settings.progress,
        dynamic_ncols=True,
    )

    def show() -> None:
        bar.set_postfix({**live.postfix(), "fail": str(stats.failed)}, refresh=False)

    show()

    async def answer(question: Question) -> Row:
        key = benchmark.video_key(question)
        path = located[key]
        if isinstance(path, Exception):
            raise path
        text = benchmark.prompt(question)
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
        return benchmark.result_row(question, reply.text, text)

    async def worker() -> None:
        while (question := await schedule.next()) is not None:
            try:
                row = await answer(question)
            except Exception as exc:  # one question's failure must not end the run
                stats.failed += 1
                message = f"{type(exc).__name__}: {exc}"
                if getattr(exc, "param", None):  # the request field an API error names
                    message += f" (param: {exc.param})"
                if len(stats.errors) < 5:
                    stats.errors.append(f"id {question['id']}: {message}")
                store.append_failure(
                    {
                        "id": question["id"],
                        "video": benchmark.video_key(question),
                        "error": message,
                        "time": time.time(),
                    }
                )
            else:
                store.append_answer(row)
                answers[benchmark.question_key(question)] = row
                live.add(row)
                stats.answered += 1
            await schedule.done(question)
            show()
            bar.update(1)

    started = time.perf_counter()
    try:
        await asyncio.gather(*(worker() for _ in range(max(1, min(settings.concurrency, len(pending))))))
    finally:
        bar.close()
        store.close()
    stats.wall_s = time.perf_counter() - started
    stats.requests_per_s = stats.answered / stats.wall_s if stats.wall_s > 0 else 0.0
    stats.uploads = files.uploaded

    rows = [answers[benchmark.question_key(q)] for q in questions if benchmark.question_key(q) in answers]
    store.write_outputs(rows, benchmark.metrics(rows))
    store.add_run({"limit": settings.limit, "finished_at": time.time(), **asdict(stats)})
    return stats


async def evaluate(
    opts: RunOptions, benchmark: Benchmark, questions: Sequence[Question], sampling: Mapping[str, Any]
) -> RunStats:
    """:func:`run_questions` with a client for ``opts``' server, closed afterwards."""
    settings = EvalSettings(
        out=opts.out,
        sampling=sampling,
        decoding=opts.decoding,
        model=opts.model,
        concurrency=opts.concurrency,
        limit=opts.limit,
        progress=opts.progress,
    )
    client = make_client(opts.base_url, opts.api_key, opts.max_retries, opts.timeout_s)
    try:
        return await run_questions(client, benchmark, questions, settings)
    finally:
        await client.close()


def print_summary(store: RunDir, stats: RunStats, table: str, out: TextIO | None = None) -> None:
    """Wall time, throughput, failures, then ``table`` (the benchmark's rendering of its metrics)."""
    out = out or sys.stdout
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
    out.write(table)
    print(f"results: {store.results}\nmetrics: {store.metrics}", file=out)


def read_metrics(store: RunDir) -> dict[str, Any]:
    return json.loads(store.metrics.read_text())

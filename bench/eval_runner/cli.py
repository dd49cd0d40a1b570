"""The ``run`` arguments every benchmark client takes (server, key, output folder, concurrency, retries)."""

from __future__ import annotations

import argparse
import asyncio
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any


def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def add_run_arguments(run: argparse.ArgumentParser, annotations_help: str, videos_help: str) -> None:
    """Data, server, output and pacing options; the benchmark adds its frames and decoding."""
    run.add_argument("--base-url", required=True, help="server root, e.g. http://127.0.0.1:8000 (/v1 is added)")
    run.add_argument("--annotations", required=True, help=annotations_help)
    run.add_argument("--videos", required=True, help=videos_help)
    run.add_argument("--out", required=True, metavar="OUT_DIR", help="results, metrics and resume state go here")
    run.add_argument("--concurrency", type=positive, default=16, help="requests in flight (default: 16)")
    run.add_argument("--limit", type=positive, help="only the first N questions")
    run.add_argument(
        "--api-key",
        default=os.environ.get("SPATIAL_MLLM_API_KEY", "").split(",")[0] or "EMPTY",
        help="bearer key (default: the first of $SPATIAL_MLLM_API_KEY)",
    )
    run.add_argument("--model", help="served model name (default: the server's only model)")
    run.add_argument("--max-retries", type=int, default=8, help="SDK retries per request (503, 429, 5xx, network)")
    run.add_argument("--timeout", type=float, default=600.0, help="seconds per request attempt")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")


def run_options_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """The parsed :func:`add_run_arguments` as keyword arguments of ``bench.eval_runner.runner.RunOptions``."""
    return {
        "base_url": args.base_url,
        "annotations": Path(args.annotations),
        "videos": Path(args.videos),
        "out": Path(args.out),
        "concurrency": args.concurrency,
        "limit": args.limit,
        "api_key": args.api_key,
        "model": args.model,
        "max_retries": args.max_retries,
        "timeout_s": args.timeout,
        "progress": not args.no_progress,
    }


def run_to_exit_code(run_benchmark: Callable[[Any], Awaitable[Any]], print_summary: Callable, opts: Any) -> int:
    """Run, print the summary, and exit 1 when some questions failed (running again retries them)."""
    stats = asyncio.run(run_benchmark(opts))
    print_summary(opts, stats)
    return 1 if stats.failed else 0

"""The ``run`` arguments every benchmark client takes (server, key, output folder, concurrency, retries)."""

from __future__ import annotations

import argparse
import os


def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def add_run_arguments(run: argparse.ArgumentParser) -> None:
    """Server, output and pacing options; the benchmark adds its data, frames and decoding."""
    run.add_argument("--base-url", required=True, help="server root, e.g. http://127.0.0.1:8000 (/v1 is added)")
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

"""ScanQA command line.

    python -m bench.scanqa run --base-url URL --annotations scanqa_val_llava_style.json --videos DIR --out OUT_DIR
        [--num-frames 16] [--resized-height 480 --resized-width 640] [--concurrency N] [--limit N] [--api-key K]
        [--model NAME] [--max-tokens 256]
    python -m bench.scanqa score RESULTS_JSON --annotations scanqa_val_llava_style.json [--out METRICS_JSON]

``run`` asks a served model every question the seed's way and writes OUT_DIR/results.json (the seed's results
format) and OUT_DIR/metrics.json (resumable: see ``bench/eval_runner/runner.py``); it exits 1 when some questions
failed (run it again to retry). ``score`` scores any results file in that format exactly as the seed's
``score_scanqa.py`` does and prints the corpus scores as JSON (raw values: the seed prints them x100, EM as is).
Both need a Java runtime for METEOR.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

from bench.eval_runner.cli import add_run_arguments, positive, run_options_kwargs, run_to_exit_code
from bench.scanqa.scoring import answers_by_id, score_predictions


def _score(args: argparse.Namespace) -> int:
    predictions = json.loads(Path(args.results).read_text())
    annotations = json.loads(Path(args.annotations).read_text())
    text = json.dumps(score_predictions(predictions, answers_by_id(annotations)), indent=2)
    if args.out:
        Path(args.out).write_text(text + "\n")
    print(text)
    return 0


def _run(args: argparse.Namespace) -> int:
    from bench.eval_runner.client import Decoding
    from bench.scanqa.runner import SEED_DECODING, RunOptions, print_summary, run_benchmark

    opts = RunOptions(
        num_frames=args.num_frames,
        frame_size=(args.resized_height, args.resized_width),
        decoding=SEED_DECODING if args.max_tokens is None else Decoding(max_tokens=args.max_tokens),
        **run_options_kwargs(args),
    )
    return run_to_exit_code(run_benchmark, print_summary, opts)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.scanqa", description="ScanQA through the API")
    sub = parser.add_subparsers(dest="command", required=True)

    score = sub.add_parser("score", help="the seed's ScanQA scores of a results JSON")
    score.add_argument("results", metavar="RESULTS_JSON", help="rows with sample_id and pred_response")
    score.add_argument("--annotations", required=True, help="scanqa_val_llava_style.json (ids and metadata.answers)")
    score.add_argument("--out", metavar="METRICS_JSON", help="also write the scores here")
    score.set_defaults(func=_score)

    run = sub.add_parser("run", help="evaluate a served model on ScanQA through the API (resumable)")
    add_run_arguments(
        run,
        annotations_help="scanqa_val_llava_style.json",
        videos_help="folder with <scene>.mp4 (ScanNet scene videos)",
    )
    run.add_argument("--num-frames", type=positive, default=16, help="frames per video (default: 16, the seed's)")
    run.add_argument("--resized-height", type=positive, default=480, help="frame height (default: the seed's 480)")
    run.add_argument("--resized-width", type=positive, default=640, help="frame width (default: the seed's 640)")
    run.add_argument("--max-tokens", type=positive, help="max new tokens (default: the seed's 256)")
    run.set_defaults(func=_run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())

"""VSI-Bench command line.

    python -m bench.vsibench score RESULTS_JSON [--out METRICS_JSON] [--stored-rewards]
    python -m bench.vsibench table A.json [NAME=B.json ...] [--per-type]
    python -m bench.vsibench run --base-url URL --annotations DIR --videos DIR --out OUT_DIR
        [--num-frames 16] [--strategy {uniform,space_aware}] [--concurrency N] [--limit N] [--api-key K]
        [--model NAME] [--max-tokens 1024]

``score`` re-scores every row from its sample and model output (so a results file from any source is scored
with one set of rules) and prints the metrics JSON; ``--stored-rewards`` instead aggregates the rewards
already in the file, like the reference's ``--results_json`` fast path. ``run`` asks a served model every
question through the OpenAI-compatible API and writes OUT_DIR/results.json and OUT_DIR/metrics.json
(resumable: see ``bench/eval_runner/runner.py``); it exits 1 when some questions failed (run it again to retry).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from bench.eval_runner.cli import add_run_arguments, positive, run_options_kwargs, run_to_exit_code
from bench.vsibench.scoring import calculate_metrics, rescore
from bench.vsibench.table import table_from_files

if TYPE_CHECKING:
    from bench.vsibench.runner import RunOptions


def _score(args: argparse.Namespace) -> int:
    results = json.loads(Path(args.results).read_text())
    if not args.stored_rewards:
        rescored = rescore(results)
        changed = sum(
            1 for old, new in zip(results, rescored, strict=True) if "reward" in old and old["reward"] != new["reward"]
        )
        if changed:
            print(f"warning: {changed} stored rewards differ from the re-scored ones", file=sys.stderr)
        results = rescored
    text = json.dumps(calculate_metrics(results), indent=2)
    if args.out:
        Path(args.out).write_text(text + "\n")
    print(text)
    return 0


def _table(args: argparse.Namespace) -> int:
    sys.stdout.write(table_from_files(args.metrics, per_type=args.per_type))
    return 0


def run_options(args: argparse.Namespace) -> RunOptions:
    """The run's options; openai and tqdm are imported only here, so ``score`` and ``table`` work without them."""
    from bench.eval_runner.client import Decoding
    from bench.vsibench.runner import RunOptions

    decoding = Decoding() if args.max_tokens is None else Decoding(max_tokens=args.max_tokens)
    return RunOptions(
        strategy=args.strategy,
        num_frames=args.num_frames,
        decoding=decoding,
        **run_options_kwargs(args),
    )


def _run(args: argparse.Namespace) -> int:
    from bench.vsibench.runner import print_summary, run_benchmark

    return run_to_exit_code(run_benchmark, print_summary, run_options(args))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.vsibench", description="VSI-Bench scoring tools")
    sub = parser.add_subparsers(dest="command", required=True)

    score = sub.add_parser("score", help="metrics JSON from a results JSON (list of scored rows)")
    score.add_argument("results", metavar="RESULTS_JSON")
    score.add_argument("--out", metavar="METRICS_JSON", help="also write the metrics here")
    score.add_argument(
        "--stored-rewards",
        action="store_true",
        help="aggregate the rows' stored rewards instead of re-scoring",
    )
    score.set_defaults(func=_score)

    table = sub.add_parser("table", help="markdown table from metrics JSON files")
    table.add_argument("metrics", nargs="+", metavar="[NAME=]METRICS_JSON")
    table.add_argument("--per-type", action="store_true", help="add one column per question type")
    table.set_defaults(func=_table)

    run = sub.add_parser("run", help="evaluate a served model on VSI-Bench through the API (resumable)")
    add_run_arguments(
        run,
        annotations_help="VSI-Bench download folder, or its test.jsonl/.parquet",
        videos_help="folder with <dataset>/<scene_name>.mp4 (the unzipped videos)",
    )
    run.add_argument("--num-frames", type=positive, default=16, help="frames per video (default: 16, the seed's)")
    run.add_argument("--strategy", choices=("uniform", "space_aware"), default="uniform")
    run.add_argument("--max-tokens", type=positive, help="max new tokens (default: the seed's 1024)")
    run.set_defaults(func=_run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())

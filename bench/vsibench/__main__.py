"""VSI-Bench command line.

    python -m bench.vsibench score RESULTS_JSON [--out METRICS_JSON] [--stored-rewards]
    python -m bench.vsibench table A.json [NAME=B.json ...] [--per-type]
    python -m bench.vsibench run ...            (not implemented yet: issue 7)

``score`` re-scores every row from its sample and model output (so a results file from any source is scored
with one set of rules) and prints the metrics JSON; ``--stored-rewards`` instead aggregates the rewards
already in the file, like the reference's ``--results_json`` fast path.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from bench.vsibench.scoring import calculate_metrics, rescore
from bench.vsibench.table import table_from_files


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


def _run(args: argparse.Namespace) -> int:
    # ---- slot for issue 7: run the served model on VSI-Bench and write RESULTS_JSON (someone else) ----
    raise SystemExit("not implemented yet: see issue 7")


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

    run = sub.add_parser("run", help="evaluate a served model on VSI-Bench (not implemented yet: issue 7)")
    run.set_defaults(func=_run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and args.command != "run":  # `run` takes its options once issue 7 defines them
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())

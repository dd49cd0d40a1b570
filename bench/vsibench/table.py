"""Markdown comparison table of VSI-Bench metrics files, laid out like Spatial-MLLM's README table.

Columns: micro Acc / MRA / All, then macro Acc / MRA / All, as percentages with two decimals; optionally
the ten per-type scores. One row per metrics.json (the output of ``python -m bench.vsibench score``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from bench.vsibench.scoring import MCA_QUESTION_TYPES, NA_QUESTION_TYPES

_SUMMARY = (
    ("micro", "acc"),
    ("micro", "mra"),
    ("micro", "all"),
    ("macro", "acc"),
    ("macro", "mra"),
    ("macro", "all"),
)
_TYPE_ORDER = (*MCA_QUESTION_TYPES, *NA_QUESTION_TYPES)


def label_for(path: Path) -> str:
    """Row label: file stem without the reference's ``metrics_`` prefix; the folder for plain metrics.json."""
    stem = path.stem
    if stem == "metrics":
        return path.resolve().parent.name
    return stem.removeprefix("metrics_")


def parse_entry(spec: str) -> tuple[str, Path]:
    """``NAME=PATH`` or ``PATH`` (label derived from the path)."""
    name, sep, path = spec.partition("=")
    if sep and name and not Path(spec).exists():
        return name, Path(path)
    return label_for(Path(spec)), Path(spec)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}"


def metrics_table(entries: Sequence[tuple[str, Mapping[str, Any]]], per_type: bool = False) -> str:
    """Markdown table, one row per (label, metrics) entry."""
    header = ["Model"] + [
        f"{kind.capitalize()} {metric.upper() if metric == 'mra' else metric.capitalize()}" for kind, metric in _SUMMARY
    ]
    if per_type:
        header += list(_TYPE_ORDER)
    lines = ["| " + " | ".join(header) + " |", "| --- |" + " ---: |" * (len(header) - 1)]
    for label, metrics in entries:
        cells = [label] + [_pct(metrics[metric][kind]) for kind, metric in _SUMMARY]
        if per_type:
            per_q = metrics.get("per_question_type", {})
            cells += [_pct(per_q[q]["score"]) if q in per_q else "-" for q in _TYPE_ORDER]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def table_from_files(specs: Sequence[str], per_type: bool = False) -> str:
    """Read each metrics JSON (``NAME=PATH`` or ``PATH``) and build the table."""
    entries = []
    for spec in specs:
        label, path = parse_entry(spec)
        entries.append((label, json.loads(path.read_text())))
    return metrics_table(entries, per_type=per_type)

"""The output folder of one evaluation, laid out so that an interrupted run resumes without asking twice.

``OUT/partial.jsonl``   one scored row per answered question, appended (and flushed) as each answer arrives;
                        a run skips the ids already there. A line cut short by a crash is dropped on load.
``OUT/failures.jsonl``  one line per failed attempt (id, video, error); failed questions are asked again next run.
``OUT/files.json``      uploaded file id per video, reused by later runs while the server still has the file.
``OUT/run.json``        the settings answers depend on (mixing two settings in one folder is refused) and the
                        statistics of every invocation.
``OUT/results.json``    the answered rows in dataset order: the seed's results format (what ``score`` reads).
``OUT/metrics.json``    the benchmark's metrics of those rows.

Rows are the benchmark's own results rows; ``row_key`` says which question a row answers.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO


def _write_json(path: Path, data: Any) -> None:
    """Write via a temporary file and rename, so a reader (or a crash) never sees half a file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    os.replace(tmp, path)


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Rows of a JSONL file; an unterminated last line (interrupted write) is cut off the file."""
    if not path.exists():
        return []
    raw = path.read_bytes()
    end = raw.rfind(b"\n") + 1
    if end < len(raw):
        with path.open("r+b") as handle:
            handle.truncate(end)
    return [json.loads(line) for line in raw[:end].decode().splitlines() if line.strip()]


class RunDir:
    """Reads and writes the files of one output folder."""

    def __init__(self, out: Path, row_key: Callable[[Mapping[str, Any]], str]) -> None:
        self.out = out
        self.row_key = row_key
        out.mkdir(parents=True, exist_ok=True)
        self.partial = out / "partial.jsonl"
        self.failures = out / "failures.jsonl"
        self.files = out / "files.json"
        self.run = out / "run.json"
        self.results = out / "results.json"
        self.metrics = out / "metrics.json"
        self._answers: TextIO | None = None
        self._failures: TextIO | None = None

    # --- settings and statistics ---

    def claim(self, config: Mapping[str, Any]) -> None:
        """Record the settings; SystemExit when the folder holds answers given under other settings."""
        state = json.loads(self.run.read_text()) if self.run.exists() else {"config": dict(config), "runs": []}
        if state["config"] != dict(config):
            diff = {k: (state["config"].get(k), v) for k, v in config.items() if state["config"].get(k) != v}
            raise SystemExit(f"{self.out} holds a run with other settings {diff} (old, new): use another --out")
        _write_json(self.run, state)

    def add_run(self, stats: Mapping[str, Any]) -> None:
        state = json.loads(self.run.read_text())
        state["runs"].append(dict(stats))
        _write_json(self.run, state)

    # --- answers ---

    def load_answers(self) -> dict[str, dict[str, Any]]:
        """Answered rows by question id (the first row wins if an id was ever written twice)."""
        answers: dict[str, dict[str, Any]] = {}
        for row in _read_jsonl(self.partial):
            answers.setdefault(self.row_key(row), row)
        return answers

    def append_answer(self, row: Mapping[str, Any]) -> None:
        if self._answers is None:
            self._answers = self.partial.open("a")
        self._answers.write(json.dumps(row, ensure_ascii=False) + "\n")
        self._answers.flush()

    def append_failure(self, record: Mapping[str, Any]) -> None:
        if self._failures is None:
            self._failures = self.failures.open("a")
        self._failures.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._failures.flush()

    def close(self) -> None:
        for handle in (self._answers, self._failures):
            if handle is not None:
                handle.close()
        self._answers = self._failures = None

    # --- uploads ---

    def load_files(self) -> dict[str, dict[str, Any]]:
        return json.loads(self.files.read_text()) if self.files.exists() else {}

    def save_files(self, files: Mapping[str, Any]) -> None:
        _write_json(self.files, dict(files))

    # --- final outputs ---

    def write_outputs(self, rows: Sequence[Mapping[str, Any]], metrics: Mapping[str, Any]) -> None:
        _write_json(self.results, list(rows))
        _write_json(self.metrics, metrics)

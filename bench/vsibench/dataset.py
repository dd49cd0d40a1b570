"""VSI-Bench as published on Hugging Face (``nyu-visionx/VSI-Bench``): the question rows and where their videos are.

The seed reads the ``full`` config's ``test`` split with ``datasets.load_dataset(DIR, "full")``. ``datasets`` is
not a dependency here, so this module reads the same files directly: the path the dataset card (README.md
front matter) gives for ``full``/``test`` when it can be read, else ``test.jsonl`` / ``test.json`` /
``test.parquet`` / ``test-*.parquet``. Parquet needs ``pyarrow``; the repository also ships ``test.jsonl``, which
is preferred whenever pyarrow is missing.

Videos live at ``VIDEOS/<dataset>/<scene_name>.mp4`` (the published ``arkitscenes/``, ``scannet/`` and
``scannetpp/`` folders after unzipping). Pre-sampled frame folders cannot be sent: the server takes one video
file per video part, not a list of frames (see :func:`video_path`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from bench.vsibench.prompts import question_text

CONFIG, SPLIT = "full", "test"
CANDIDATES = ("test.jsonl", "test.json", "test.parquet", "test-*.parquet")
FRAME_FOLDER_DIRS = ("sa_sampling", "uniform_sampling")


class FrameFoldersUnsupported(RuntimeError):
    """A question's video exists only as a folder of frames, which the API cannot take as one video."""


def _card_paths(directory: Path) -> list[Path]:
    """Files of the ``full`` config's ``test`` split according to the dataset card; [] when not readable."""
    readme = directory / "README.md"
    if not readme.is_file():
        return []
    text = readme.read_text(errors="replace")
    if not text.startswith("---"):
        return []
    try:
        import yaml  # vLLM depends on PyYAML; without it the well-known file names are tried instead
    except ImportError:
        return []
    front = text.split("---", 2)[1]
    try:
        card = yaml.safe_load(front) or {}
    except yaml.YAMLError:
        return []
    for config in card.get("configs") or []:
        if not isinstance(config, dict) or config.get("config_name") != CONFIG:
            continue
        data_files = config.get("data_files") or []
        for entry in data_files if isinstance(data_files, list) else []:
            if isinstance(entry, dict) and entry.get("split") == SPLIT:
                patterns = entry.get("path")
                patterns = [patterns] if isinstance(patterns, str) else list(patterns or [])
                return sorted(p for pattern in patterns for p in directory.glob(pattern))
    return []


def _have_pyarrow() -> bool:
    try:
        import pyarrow.parquet  # noqa: F401
    except ImportError:
        return False
    return True


def annotation_files(path: Path) -> list[Path]:
    """The annotation file(s) to read for ``path`` (a file, or the downloaded dataset folder)."""
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise FileNotFoundError(f"annotations not found: {path}")
    files = _card_paths(path)
    if files and all(f.suffix == ".parquet" for f in files) and not _have_pyarrow() and (path / "test.jsonl").is_file():
        files = [path / "test.jsonl"]  # same rows; no pyarrow needed
    if not files:
        for pattern in CANDIDATES:
            files = sorted(path.glob(pattern))
            if files:
                break
    if not files:
        raise FileNotFoundError(f"no VSI-Bench annotation file in {path} (looked for {', '.join(CANDIDATES)})")
    return files


def _read_file(path: Path) -> list[dict[str, Any]]:
    if path.suffix == ".jsonl":
        with path.open() as handle:
            return [json.loads(line) for line in handle if line.strip()]
    if path.suffix == ".json":
        data = json.loads(path.read_text())
        return list(data if isinstance(data, list) else data[SPLIT])
    if path.suffix == ".parquet":
        try:
            import pyarrow.parquet as pq
        except ImportError as exc:
            raise SystemExit(
                f"{path} is parquet, which needs pyarrow (not installed); pass the dataset's test.jsonl instead"
            ) from exc
        return pq.read_table(path).to_pylist()
    raise ValueError(f"unsupported annotation format: {path} (jsonl, json or parquet)")


def load_questions(path: Path, limit: int | None = None) -> list[dict[str, Any]]:
    """The ``test`` rows in file order, checked up front (unique ids, known types, options for multiple choice)
    so that a data problem stops the run before any request; ``limit`` keeps the first rows."""
    rows = [row for file in annotation_files(path) for row in _read_file(file)]
    seen: set[str] = set()
    for index, row in enumerate(rows):
        missing = [k for k in ("id", "dataset", "scene_name", "question_type", "question") if k not in row]
        if missing:
            raise ValueError(f"annotation row {index} lacks {', '.join(missing)}")
        key = question_key(row)
        if key in seen:
            raise ValueError(f"duplicate question id {row['id']!r}")
        seen.add(key)
        question_text(row)  # raises for unknown types and options-less multiple choice
    return rows if limit is None else rows[:limit]


def question_key(sample: Mapping[str, Any]) -> str:
    """The id a question is tracked by across runs (VSI-Bench ids are ints; JSON keeps them, str() unifies)."""
    return str(sample["id"])


def video_key(sample: Mapping[str, Any]) -> str:
    """``<dataset>/<scene_name>``: one video, shared by all its questions."""
    return f"{sample['dataset']}/{sample['scene_name']}"


def video_path(videos: Path, sample: Mapping[str, Any]) -> Path:
    """``VIDEOS/<dataset>/<scene_name>.mp4``; FrameFoldersUnsupported when only a frame folder is there
    (the seed's ``sa_sampling_16f/<dataset>/<scene>/`` or ``python -m sampling presample``'s
    ``{sa_sampling,uniform_sampling}/<scene>/``), FileNotFoundError when nothing is."""
    dataset, scene = sample["dataset"], sample["scene_name"]
    mp4 = videos / dataset / f"{scene}.mp4"
    if mp4.is_file():
        return mp4
    folders = [videos / dataset / scene, *(videos / d / scene for d in FRAME_FOLDER_DIRS)]
    for folder in folders:
        if folder.is_dir() and any(folder.glob("*.png")):
            raise FrameFoldersUnsupported(
                f"{folder} is a folder of frames: the server takes one video file per video part, not a list of "
                "frames, so pre-sampled frames cannot be evaluated through the API. Pass the mp4 folders and "
                "--strategy space_aware (or uniform): the server samples the frames itself."
            )
    raise FileNotFoundError(f"video not found: {mp4}")


def videos_in_order(questions: Sequence[Mapping[str, Any]]) -> list[str]:
    """Video keys in order of first appearance."""
    return list(dict.fromkeys(video_key(q) for q in questions))

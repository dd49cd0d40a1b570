"""A synthetic mini VSI-Bench in the published layout: annotation rows of every question type and small mp4s.

``ROOT/annotations/test.jsonl`` (with a dataset card naming it as the ``full`` config's test split, like the
Hugging Face download) and ``ROOT/videos/<dataset>/<scene_name>.mp4``. Rows go round-robin over the videos,
so a run has to regroup them by video to reuse uploads and caches.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from media import encode_mp4

DATASETS = ("arkitscenes", "scannet", "scannetpp")
CARD = """---
configs:
- config_name: full
  data_files:
  - split: test
    path: test.jsonl
---
# mini VSI-Bench (synthetic)
"""

# (question_type, question, options or None, ground truth): one per type, worded like VSI-Bench
TEMPLATES: tuple[tuple[str, str, list[str] | None, str], ...] = (
    ("object_counting", "How many chair(s) are in this room?", None, "3"),
    (
        "object_abs_distance",
        "Measuring from the closest point of each object, what is the direct distance between the sofa and the "
        "table (in meters)?",
        None,
        "1.8",
    ),
    (
        "object_size_estimation",
        "What is the length of the longest dimension (length, width, or height) of the bed, measured in centimeters?",
        None,
        "203",
    ),
    ("room_size_estimation", "What is the size of this room (in square meters)?", None, "21.5"),
    (
        "object_rel_distance",
        "Measuring from the closest point of each object, which of these objects (table, lamp, tv, sink) is the "
        "closest to the stool?",
        ["A. table", "B. lamp", "C. tv", "D. sink"],
        "B",
    ),
    (
        "object_rel_direction_easy",
        "If I am standing by the sofa and facing the tv, is the door to my left or the right?",
        ["A. left", "B. right"],
        "A",
    ),
    (
        "object_rel_direction_medium",
        "If I am standing by the sofa and facing the tv, is the door to my left, right, or back?",
        ["A. left", "B. right", "C. back"],
        "C",
    ),
    (
        "object_rel_direction_hard",
        "If I am standing by the sofa and facing the tv, is the door to my front-left, front-right, back-left, "
        "or back-right?",
        ["A. front-left", "B. front-right", "C. back-left", "D. back-right"],
        "D",
    ),
    (
        "route_planning",
        "You are a robot beginning at the door facing the bed. You want to navigate to the sink. 1. Go forward "
        "until the bed. 2. [please fill in] 3. Go forward until the sink. You have reached the final "
        "destination.",
        ["A. Turn Left", "B. Turn Right", "C. Turn Back"],
        "A",
    ),
    (
        "obj_appearance_order",
        "What will be the first-time appearance order of the following categories in the video: chair, table, "
        "lamp, bed?",
        ["A. chair, table, lamp, bed", "B. table, chair, bed, lamp", "C. lamp, bed, chair, table", "D. bed, lamp"],
        "A",
    ),
)


@dataclass(frozen=True)
class MiniBench:
    annotations: Path  # the dataset folder (card + test.jsonl)
    videos: Path
    rows: list[dict[str, Any]]
    scenes: list[str]  # one per video; upload file names are <scene>.mp4


def write_mini_vsibench(
    root: Path, prefix: str, n_videos: int = 3, per_video: int = 8, missing_videos: int = 0
) -> MiniBench:
    """``n_videos`` videos with ``per_video`` questions each (every type present once there are 10 or more
    rows), plus ``missing_videos`` scenes whose mp4 does not exist (their questions must fail, not the run)."""
    from model_plugin.reference.demo import synthetic_video

    annotations, videos = root / "annotations", root / "videos"
    annotations.mkdir(parents=True)
    scenes = [f"{prefix}_scene{i:02d}" for i in range(n_videos + missing_videos)]
    for i, scene in enumerate(scenes[:n_videos]):
        folder = videos / DATASETS[i % len(DATASETS)]
        folder.mkdir(parents=True, exist_ok=True)
        seed = zlib.crc32(scene.encode())  # distinct content per scene: no cache hit from another test's videos
        frames = synthetic_video(frames=16, height=112, width=140, seed=seed).permute(0, 2, 3, 1).numpy()
        encode_mp4(np.ascontiguousarray(frames), folder / f"{scene}.mp4", fps=8)
    rows = []
    for n in range(len(scenes) * per_video):
        v = n % len(scenes)
        qtype, question, options, truth = TEMPLATES[n % len(TEMPLATES)]
        rows.append(
            {
                "id": 1000 + n,
                "dataset": DATASETS[v % len(DATASETS)],
                "scene_name": scenes[v],
                "question_type": qtype,
                "question": question,
                "options": options,
                "ground_truth": truth,
            }
        )
    (annotations / "README.md").write_text(CARD)
    (annotations / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return MiniBench(annotations, videos, rows, scenes)

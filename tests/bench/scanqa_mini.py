"""A synthetic mini ScanQA in the published format: ``scanqa_val_llava_style.json`` rows and small scene mp4s.

``ROOT/scanqa_val_llava_style.json`` holds LLaVA-style rows (``id``, ``video``, ``conversations``,
``metadata.answers``) and ``ROOT/videos/<scene>.mp4`` the scene videos (the last component of ``video``). Rows go
round-robin over the scenes, so a run has to regroup them by video to reuse uploads and caches.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from media import encode_mp4

# (question_type, question, answers): worded like ScanQA's
TEMPLATES: tuple[tuple[str, str, list[str]], ...] = (
    ("color", "What color is the chair next to the desk?", ["brown", "dark brown"]),
    ("count", "How many pillows are on the bed?", ["2", "two"]),
    ("location", "Where is the trash can located?", ["under the desk"]),
    ("object", "What is placed on top of the cabinet?", ["a lamp", "lamp"]),
)


@dataclass(frozen=True)
class MiniScanQA:
    annotations: Path  # the JSON file
    videos: Path
    rows: list[dict[str, Any]]
    scenes: list[str]  # upload file names are <scene>.mp4


def write_mini_scanqa(root: Path, prefix: str, n_videos: int = 2, per_video: int = 3) -> MiniScanQA:
    from model_plugin.reference.demo import synthetic_video

    videos = root / "videos"
    videos.mkdir(parents=True)
    scenes = [f"{prefix}_scene{i:04d}_00" for i in range(n_videos)]
    for scene in scenes:
        seed = zlib.crc32(scene.encode())  # distinct content per scene: no cache hit from another test's videos
        frames = synthetic_video(frames=16, height=112, width=140, seed=seed).permute(0, 2, 3, 1).numpy()
        encode_mp4(np.ascontiguousarray(frames), videos / f"{scene}.mp4", fps=8)
    rows = []
    for n in range(n_videos * per_video):
        scene = scenes[n % n_videos]
        qtype, question, answers = TEMPLATES[n % len(TEMPLATES)]
        rows.append(
            {
                "id": f"val-{scene}-{n}_0",
                "video": f"scannet/videos/{scene}",
                "conversations": [
                    {"from": "human", "value": f"<video>\n{question}"},
                    {"from": "gpt", "value": answers[0]},
                ],
                "metadata": {"dataset": "scanqa", "question_type": qtype, "answers": answers},
            }
        )
    annotations = root / "scanqa_val_llava_style.json"
    annotations.write_text(json.dumps(rows, indent=2))
    return MiniScanQA(annotations, videos, rows, scenes)

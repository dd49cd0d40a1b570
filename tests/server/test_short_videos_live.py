"""Against the live server: a video shorter than the frames asked for, under both strategies.

Uniform keeps qwen-vl-utils' rule (a 400 naming ``video_sampling.num_frames``), space-aware the original's
``sa_sampling.py`` rule (every frame at most, none repeated, a 200 whose ``video_frames`` says so in the same
words); see ``sampling/short_videos.py``.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import numpy as np
import pytest
from media import data_url, encode_mp4

pytestmark = pytest.mark.engine


def _clip(path: Path, frames: int) -> Path:
    rng = np.random.default_rng(frames)
    return encode_mp4(rng.integers(0, 256, (frames, 56, 56, 3), dtype=np.uint8), path, fps=4)


def _ask(live, video: Path, strategy: str, num_frames: int) -> httpx.Response:
    body = {
        "model": "spatial-mllm-tiny",
        "max_tokens": 1,
        "messages": [{"role": "user", "content": [{"type": "video_url", "video_url": {"url": data_url(video)}}]}],
        "video_sampling": {"strategy": strategy, "num_frames": num_frames},
    }
    return httpx.post(f"{live.base}/v1/chat/completions", json=body, headers=live.headers, timeout=300)


@pytest.mark.parametrize("frames", [5, 1])
def test_a_short_clip_follows_each_strategys_original_in_the_same_words(live, tmp_path: Path, frames: int) -> None:
    clip = _clip(tmp_path / "short.mp4", frames)
    uniform = _ask(live, clip, "uniform", 8)
    assert uniform.status_code == 400, uniform.text
    refusal = uniform.json()["error"]
    assert refusal["param"] == "video_sampling.num_frames"
    assert (
        refusal["message"].startswith(f"The video has {frames} frame(s)") and "rather than repeat" in refusal["message"]
    )

    space_aware = _ask(live, clip, "space_aware", 8)
    assert space_aware.status_code == 200, space_aware.text
    (used,) = space_aware.json()["video_frames"]
    assert 1 <= len(used["indices"]) <= frames and len(set(used["indices"])) == len(used["indices"])
    assert used["candidates"] == frames and used["requested_frames"] == 8
    assert used["note"].startswith(f"The video has {frames} frame(s) but 8 were asked")
    assert "rather than repeat" in used["note"]


def test_a_space_aware_answer_with_every_frame_asked_carries_no_note(live, room_video: Path) -> None:
    reply = _ask(live, room_video, "space_aware", 4)
    assert reply.status_code == 200, reply.text
    (used,) = reply.json()["video_frames"]
    assert ("note" in used) == (len(used["indices"]) < 4)  # a note exactly when fewer came back

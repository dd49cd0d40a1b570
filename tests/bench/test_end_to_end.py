"""The end-to-end benchmark's two paths on small inputs: the seed's loop in-process and our session server."""

from __future__ import annotations

import asyncio
import math
from pathlib import Path

import pytest

from bench.bench_end_to_end import SeedLoop, plot, serve_pass, summarise, to_markdown
from bench.media import synthetic_mp4

# the session server's settings (tests/conftest.py): 8 frames, 3136..12544 pixels per frame
FRAMES, PIXELS = 8, (3136, 12544)
QUESTIONS = ["How many chairs are in this room?", "Which is closer to the door, the bed or the desk?"]


def test_both_paths_answer_the_same_prompts_and_render(live, tiny_checkpoint: Path, tmp_path: Path) -> None:
    videos = [tmp_path / f"clip{i}.mp4" for i in range(2)]
    for i, path in enumerate(videos):
        synthetic_mp4(path, 24, 112, 140, fps=8, seed=50 + i)
    seed = SeedLoop(tiny_checkpoint, FRAMES, max_tokens=3, pixels=PIXELS).run(videos, QUESTIONS)
    ours = asyncio.run(serve_pass(live.base, videos, QUESTIONS, 2, 3, model="spatial-mllm-tiny", headers=live.headers))
    for run in (seed, ours):
        assert run["requests"] == 4 and len(run["ttft_s"]) == 4
        assert all(0 < t < run["wall_s"] for t in run["ttft_s"]) and not math.isnan(run["ttft_p95_s"])
    # same frames and sizes on both sides: identical prompt lengths (one per question wording)
    assert seed["prompt_tokens"] == ours["prompt_tokens"] and len(seed["prompt_tokens"]) == 2

    result = summarise({"seed": [seed], "c2": [ours]}, {"videos": 2, "questions_per_video": 2, "frames": FRAMES,
                       "clip": "24 frames", "max_tokens": 3, "concurrency": [2], "reps": 1})  # fmt: skip
    table = to_markdown(result)
    assert "seed loop" in table and "2 concurrent" in table and "Target: 4x" in table
    plot(result, tmp_path / "e2e.png")
    assert (tmp_path / "e2e.png").read_bytes()[:4] == b"\x89PNG"


def test_summarise_refuses_different_prompts() -> None:
    run = {"requests_per_s": 1.0, "ttft_s": [0.1], "prompt_tokens": [10]}
    with pytest.raises(RuntimeError, match="different prompts"):
        summarise({"seed": [run], "c1": [{**run, "prompt_tokens": [11]}]}, {})

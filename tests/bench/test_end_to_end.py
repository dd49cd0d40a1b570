"""The end-to-end benchmark's paths on small inputs: the original's loop (with and without a frame cache) in
process and our session server; token counts checked equal, the report interface holds."""

from __future__ import annotations

import asyncio
import math
from pathlib import Path

import pytest

from bench.bench_end_to_end import QUESTIONS, SeedLoop, plot, serve_pass, summarise, to_markdown
from bench.media import synthetic_mp4

# the session server's settings (tests/conftest.py): 8 frames, 3136..12544 pixels per frame
FRAMES, PIXELS = 8, (3136, 12544)
ASKED = QUESTIONS[:2]


def test_every_path_answers_the_same_prompts_with_exact_lengths(live, tiny_checkpoint: Path, tmp_path: Path) -> None:
    videos = [tmp_path / f"clip{i}.mp4" for i in range(2)]
    for i, path in enumerate(videos):
        synthetic_mp4(path, 24, 112, 140, fps=8, seed=50 + i)
    loop = SeedLoop(tiny_checkpoint, FRAMES, max_tokens=3, pixels=PIXELS)
    seed = loop.run(videos, ASKED)
    cached = loop.run(videos, ASKED, cache_frames=True)
    ours = asyncio.run(serve_pass(live.base, videos, ASKED, 2, 3, model="spatial-mllm-tiny", headers=live.headers))
    for run in (seed, cached, ours):
        assert run["requests"] == 4 and len(run["ttft_s"]) == 4
        assert all(0 < t < run["wall_s"] for t in run["ttft_s"]) and not math.isnan(run["ttft_p95_s"])
        assert {a["completion_tokens"] for a in run["answers"]} == {3}
    # same frames and sizes on every side: identical prompt lengths (one per question wording)
    assert seed["prompt_tokens"] == cached["prompt_tokens"] == ours["prompt_tokens"] and len(seed["prompt_tokens"]) == 2

    meta = {"videos": 2, "questions": [2], "frames": FRAMES, "clip": "24 frames", "max_tokens": 3,
            "concurrency": [2], "paths": ["seed", "seed_cached", "ours_c2"], "reps": 1, "order": "one pass",
            "cpus": 2, "torch_threads": 2}  # fmt: skip
    result = summarise({"q2/seed": [seed], "q2/seed_cached": [cached], "q2/ours_c2": [ours]}, meta)
    assert result["tokens"]["completion_tokens"] == 3 and len(result["tokens"]["prompt_tokens_by_question"]) == 2
    assert to_markdown(result).strip()
    plot(result, tmp_path / "e2e.png")
    assert (tmp_path / "e2e.png").read_bytes()[:4] == b"\x89PNG"


def _run(prompt: int, completion: int = 3) -> dict:
    answer = {"question": 0, "ttft_s": 0.1, "prompt_tokens": prompt, "completion_tokens": completion}
    return {"requests_per_s": 1.0, "ttft_s": [0.1], "answers": [answer]}


def test_summarise_refuses_different_prompts_or_lengths() -> None:
    meta = {"max_tokens": 3}
    with pytest.raises(RuntimeError, match="different prompts"):
        summarise({"q1/seed": [_run(10)], "q1/ours_c1": [_run(11)]}, meta)
    with pytest.raises(RuntimeError, match="completion lengths"):
        summarise({"q1/seed": [_run(10)], "q1/ours_c1": [_run(10, completion=2)]}, meta)
    # plain vLLM's own video loader may see other prompts: recorded, not refused
    tokens = summarise({"q1/seed": [_run(10)], "q1/vllm_c8": [_run(12)]}, meta)["tokens"]
    assert tokens["plain_vllm_prompts_equal"] is False

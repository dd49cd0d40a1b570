"""The end-to-end benchmark's paths on small inputs: the original's loop (with and without a frame cache) in
process and our session server; token ids and counts checked equal, the report interface holds."""

from __future__ import annotations

import asyncio
import math
from pathlib import Path

import pytest

from bench.bench_end_to_end import (
    QUESTIONS,
    SeedLoop,
    check_token_ids,
    plot,
    serve_pass,
    summarise,
    to_markdown,
)
from bench.media import synthetic_mp4
from bench.protocol import Protocol

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

    # the check pass: the same video, token ids from the loops' generate and from vLLM's return_token_ids
    shared = videos[:1]
    check = {
        "seed": loop.run(shared, ASKED),
        "seed_cached": loop.run(shared, ASKED, cache_frames=True),
        "ours_c2": asyncio.run(
            serve_pass(live.base, shared, ASKED, 2, 3, model="spatial-mllm-tiny", headers=live.headers, ids=True)
        ),
    }
    ids = check_token_ids(check)
    assert ids["strict_paths"] == ["seed", "seed_cached", "ours_c2"] and ids["questions"] == 2
    assert all(len(ref["completion_ids"]) == 3 for ref in ids["reference"].values())

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


def _answer(question: int, prompt: str, completion: list[int]) -> dict:
    return {"question": question, "ttft_s": 0.1, "prompt_tokens": 10, "completion_tokens": len(completion),
            "prompt_ids": prompt, "completion_ids": completion}  # fmt: skip


def _check_run(*answers: dict) -> dict:
    return {"answers": list(answers)}


def test_token_id_check_fails_loudly_on_any_mismatch() -> None:
    same = _check_run(_answer(0, "p0", [1, 2, 3]), _answer(1, "p1", [4, 5, 6]))
    other_completion = _check_run(_answer(0, "p0", [1, 2, 3]), _answer(1, "p1", [4, 5, 7]))
    other_prompt = _check_run(_answer(0, "pX", [1, 2, 3]), _answer(1, "p1", [4, 5, 6]))
    assert check_token_ids({"seed": same, "ours_c8": same})["strict_paths"] == ["seed", "ours_c8"]
    with pytest.raises(RuntimeError, match="token ids differ between ours_c8 and seed"):
        check_token_ids({"seed": same, "ours_c8": other_completion})
    with pytest.raises(RuntimeError, match="token ids differ"):
        check_token_ids({"seed": same, "seed_cached": other_prompt})
    with pytest.raises(RuntimeError, match="no token ids"):
        check_token_ids({"seed": same, "ours_c8": _check_run(_answer(0, "", [1, 2, 3]))})
    # plain vLLM builds its own prompt: compared and recorded, not refused
    ids = check_token_ids({"seed": same, "ours_c8": same, "vllm_c8": other_prompt})
    assert ids["plain_vllm_ids_equal"] == {"vllm_c8": False}


def _timed(rate: float) -> dict:
    return {"requests_per_s": rate, "ttft_s": [0.1], "answers": [{"question": 0, "prompt_tokens": 10,
            "completion_tokens": 3}]}  # fmt: skip


META = {"videos": 1, "questions": [1], "frames": 8, "clip": "24 frames", "max_tokens": 3, "concurrency": [8],
        "reps": 3, "cpus": 2, "torch_threads": 2}  # fmt: skip


def test_identical_work_that_measures_apart_marks_the_section_noisy() -> None:
    paths = ["seed", "seed_cached", "vllm_c8", "ours_c8"]
    passes = {f"q1/{p}": [_timed(r) for r in (1.0, 1.1, 0.9)] for p in paths}
    result = summarise(passes, {**META, "paths": paths}, Protocol())
    assert result["identical_work"]["within"] and not result["meta"]["protocol"]["noisy"]
    passes["q1/seed_cached"] = [_timed(r) for r in (4.0, 4.2, 3.9)]
    result = summarise(passes, {**META, "paths": paths}, Protocol())
    assert not result["identical_work"]["within"] and result["meta"]["protocol"]["noisy"]
    page = to_markdown(result)
    assert "**Noisy:** at q=1 the loop and the loop with a frame cache do identical work" in page
    assert "**outside** ±15%" in page


def test_the_table_shows_min_max_and_the_layer_against_plain_vllm() -> None:
    paths = ["seed", "seed_cached", "vllm_c8", "ours_c8"]
    rates = {"seed": 1.0, "seed_cached": 1.0, "vllm_c8": 2.0, "ours_c8": 3.0}
    passes = {f"q1/{p}": [_timed(rates[p] * f) for f in (1.0, 0.9, 1.2)] for p in paths}
    page = to_markdown(summarise(passes, {**META, "paths": paths}, Protocol()))
    assert "| vs original's loop | vs loop + frame cache | vs plain vLLM + plugin |" in page
    ours = next(line for line in page.splitlines() if "spatial-mllm-serve" in line)
    assert "3.00 (2.70–3.60)" in ours and ours.endswith("| 3.00x | 3.00x | 1.50x |")
    # the 640x480 row: only ours and plain vLLM, so only the column against plain vLLM
    two = ["vllm_c8", "ours_c8"]
    page = to_markdown(summarise({k: v for k, v in passes.items() if k.split("/")[1] in two}, {**META, "paths": two}))
    assert "vs original's loop" not in page and "| vs plain vLLM + plugin |" in page
    assert next(line for line in page.splitlines() if "spatial-mllm-serve" in line).endswith("| 1.50x |")

"""End-to-end serving under a VSI-like load, decomposed: the original's loop, a stronger loop, vLLM, our layer.

``python -m bench.bench_end_to_end [--videos 1] [--questions 1 8 18] [--concurrency 1 8] [--reps 5] [--paths ...]
[--json PATH]``

Every path runs the same tiny checkpoint on the same input: ``--videos`` synthetic H.264 clips (640x480 by
default, 16 uniformly sampled frames per question by qwen-vl-utils' rules, which gives 644x476 frames and about
3,100 video tokens), ``q`` questions per clip for each ``q`` of ``--questions`` (VSI-Bench averages ~18), greedy
decoding of exactly ``--max-tokens`` tokens (``ignore_eos`` on the servers, ``min_new_tokens`` in the loops).
Before any timing, every path answers the same questions about one shared video (the warm-up pass, not
counted) and the run refuses to go on unless the loops and our server produced the same prompt token ids and
the same completion token ids (vLLM's ``return_token_ids``); plain vLLM's ids are recorded and compared too
(its own video loader may build a different prompt, which is shown, not refused). Every timed request's prompt
and completion token counts are checked as well.

* ``seed``: the original evaluation's loop as this project reproduces it, in this process: for every question,
  qwen-vl-utils' ``process_vision_info`` decodes and samples the video from its file, the project's input builder
  (``model_plugin.reference.inference.build_inputs``, the Qwen2.5-VL processor on transformers 5.x) builds the
  inputs, and the project's reference model (transformers) runs ``generate`` with batch 1. It is not the
  original's code: that runs on transformers 4.51.3 with its own model class and decoding loop; the reference
  reproduces its outputs (golden-fixture tests), not its speed.
* ``seed + frame cache``: the same loop decoding each video once (a per-video frame cache): what a careful
  user of the original gets without a server. (A batch-8 loop is not measured: the reference's input builder
  takes one prompt at a time.)
* ``vllm + plugin``: plain ``vllm serve`` with our model plugin, the video sent as a data URL with every
  question (vLLM's own video loader, so its prompt counts may differ and are shown), at the highest
  concurrency: what vLLM alone gives.
* ``ours, c clients``: ``python -m server``; each video uploaded once (``/v1/files``, timed) and its questions
  sent by file id, streamed, by ``c`` concurrent clients: what our layer (caching by upload) adds.

Every repetition runs every path once per question count under :mod:`bench.protocol`: the path order shuffled
(seeded) per repetition and question count, each pass between two calibrations and re-run once when the
machine's speed moved, each pass on fresh videos with a fresh frame cache (nothing carries over between
passes), and the servers not being timed suspended (SIGSTOP) while a pass runs, so nothing else uses the cores.
At one question per video the loop and the loop with a frame cache do identical work: their medians must agree
within the protocol's tolerance, or the section is marked noisy. Reported: median requests/s with min–max (wall
time of the pass, uploads included), TTFT p50 over all requests, and ratios that name both sides.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import json
import os
import re
import statistics
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from bench.media import synthetic_mp4
from bench.protocol import Protocol, notes, shuffled_orders
from bench.results import emit
from bench.servers import ours, plain_vllm, running_process, suspended

QUESTIONS = [
    "How many chairs are in this room? Answer with a number.",
    "What is the length of the longest dimension of the table, in centimetres?",
    "How far is the sofa from the door, in metres?",
    "Standing by the bed and facing the window, is the lamp to the left or to the right?",
    "Which object appears first in the video: the fridge or the television?",
    "What is the size of this room in square metres?",
    "Which is closer to the sink: the stove or the oven?",
    "How many doors does the room have?",
    "What is the height of the bookshelf, in centimetres?",
    "How many pillows are on the bed? Answer with a number.",
    "Which is farther from the window: the desk or the wardrobe?",
    "In what order do the chair, the lamp and the rug first appear?",
    "If I stand by the door facing the bed, where is the desk: front-left, front-right, back-left or back-right?",
    "How far apart are the two chairs, in metres?",
    "What is the longest side of the rug, in centimetres?",
    "Which object is the smallest: the cup, the clock or the vase?",
    "How many windows does the room have?",
    "Walking from the sofa to the fridge, do I pass the table on my left or my right?",
]
CLIP_FRAMES, CLIP_FPS = 64, 8
TARGET_RATIO = 4.0


def _percentile(values: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=np.float64), q)) if values else float("nan")


@dataclass
class Answer:
    """One request as a client saw it."""

    question: int  # index into QUESTIONS
    ttft_s: float
    prompt_tokens: int
    completion_tokens: int
    prompt_ids: str = ""  # digest of the prompt's token ids (check pass only)
    completion_ids: list[int] | None = None  # the generated token ids (check pass only)


def ids_digest(ids: Sequence[int]) -> str:
    """A short fingerprint of a token-id sequence (prompts run to thousands of ids)."""
    return hashlib.sha256(json.dumps([int(i) for i in ids]).encode()).hexdigest()[:16]


def _summary(wall_s: float, answers: list[Answer]) -> dict[str, Any]:
    ttfts = [a.ttft_s for a in answers]
    return {
        "wall_s": wall_s,
        "requests": len(answers),
        "requests_per_s": len(answers) / wall_s,
        "answers": [asdict(a) for a in answers],
        "ttft_s": ttfts,
        "ttft_p50_s": _percentile(ttfts, 50),
        "ttft_p95_s": _percentile(ttfts, 95),
        "prompt_tokens": sorted({a.prompt_tokens for a in answers}),
    }


# --------------------------------------------------------------------------------------------------------
# the seed's loop


class FirstTokenClock:
    """A ``generate`` streamer that notes when the first new token arrives (the prompt is put first)."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.puts = 0
        self.ttft_s = float("nan")

    def put(self, value: object) -> None:
        self.puts += 1
        if self.puts == 2:
            self.ttft_s = time.perf_counter() - self.start

    def end(self) -> None:
        pass


class SeedLoop:
    """The reference model answering one question at a time, with the seed's frame sampling per question.

    ``pixels`` (min, max per frame) are passed to qwen-vl-utils; ``None`` keeps its defaults (a 640x480 video
    becomes 644x476 frames at 16 frames).
    """

    def __init__(self, checkpoint: Path, frames: int, max_tokens: int, pixels: tuple[int, int] | None = None) -> None:
        os.environ["FORCE_QWENVL_VIDEO_READER"] = "decord"
        from qwen_vl_utils import vision_process
        from transformers import AutoProcessor

        from model_plugin.reference import SpatialMLLMForConditionalGeneration

        vision_process.FORCE_QWENVL_VIDEO_READER = "decord"
        vision_process.get_video_reader_backend.cache_clear()
        self.vision = vision_process
        self.model = SpatialMLLMForConditionalGeneration.from_pretrained(checkpoint).eval()
        self.processor = AutoProcessor.from_pretrained(checkpoint)
        self.frames = frames
        self.max_tokens = max_tokens
        self.pixels = pixels

    def sample(self, video: Path) -> tuple[Any, float]:
        """qwen-vl-utils' frames (uint8 tensor) and sample fps for one video file."""
        import torch

        element: dict[str, Any] = {"type": "video", "video": str(video), "nframes": self.frames}
        if self.pixels is not None:
            element |= {"min_pixels": self.pixels[0], "max_pixels": self.pixels[1]}
        messages = [{"role": "user", "content": [element, {"type": "text", "text": "?"}]}]
        _, videos, kwargs = self.vision.process_vision_info(messages, return_video_kwargs=True)
        return videos[0].round().to(torch.uint8), kwargs["fps"][0]

    def answer(self, video: Path, question: str, sampled: tuple[Any, float] | None = None) -> Answer:
        """One question, from reading the video file (unless ``sampled`` frames are given) to the last token."""
        import torch

        from model_plugin.reference.inference import build_inputs

        clock = FirstTokenClock()
        frames, _ = sampled or self.sample(video)
        inputs = build_inputs(self.processor, [frames], question)  # no fps, as the seed: its 2.0 fps rule
        with torch.no_grad():
            out = self.model.generate(
                **inputs,
                max_new_tokens=self.max_tokens,
                min_new_tokens=self.max_tokens,
                do_sample=False,
                streamer=clock,
            )
        prompt = int(inputs["input_ids"].shape[1])
        return Answer(
            QUESTIONS.index(question),
            clock.ttft_s,
            prompt,
            int(out.shape[1]) - prompt,
            ids_digest(inputs["input_ids"][0].tolist()),
            out[0, prompt:].tolist(),
        )

    def run(self, videos: list[Path], questions: Sequence[str], cache_frames: bool = False) -> dict[str, Any]:
        """Every question on every video in order; ``cache_frames`` decodes each video once, not per question.

        The frame cache is local to this call: a pass never reuses frames from an earlier one.
        """
        answers = []
        start = time.perf_counter()
        for video in videos:
            sampled = self.sample(video) if cache_frames else None  # this pass's own cache
            answers.extend(self.answer(video, question, sampled) for question in questions)
        return _summary(time.perf_counter() - start, answers)


# --------------------------------------------------------------------------------------------------------
# servers: ours (upload once, file ids) and plain vLLM (the video with every question)


def _video_url(path: Path) -> dict[str, Any]:
    data = base64.b64encode(path.read_bytes()).decode()
    return {"type": "video_url", "video_url": {"url": f"data:video/mp4;base64,{data}"}}


async def _ask(
    client: httpx.AsyncClient, model: str, video: dict[str, Any], question: str, max_tokens: int, ids: bool = False
) -> Answer:
    """One streamed question about a video part (file id or data URL), read to the end; exactly ``max_tokens``.

    ``ids`` asks vLLM for the prompt's and the completion's token ids (``return_token_ids``) and collects them.
    """
    body = {
        "model": model,
        "messages": [{"role": "user", "content": [video, {"type": "text", "text": question}]}],
        "max_tokens": max_tokens,
        "ignore_eos": True,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
    } | ({"return_token_ids": True} if ids else {})
    start = time.perf_counter()
    first, usage = float("nan"), {"prompt_tokens": -1, "completion_tokens": -1}
    prompt_ids: list[int] = []
    completion_ids: list[int] = []
    async with client.stream("POST", "/v1/chat/completions", json=body) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            if first != first and line.startswith("data: ") and '"content":"' in line and '"content":""' not in line:
                first = time.perf_counter() - start
            if line.startswith("data: {") and '"usage":{' in line:
                usage = json.loads(line[6:])["usage"]
            if ids and line.startswith("data: {"):
                chunk = json.loads(line[6:])
                prompt_ids.extend(chunk.get("prompt_token_ids") or [])
                for choice in chunk.get("choices") or []:
                    completion_ids.extend(choice.get("token_ids") or [])
    answer = Answer(QUESTIONS.index(question), first, usage["prompt_tokens"], usage["completion_tokens"])
    if ids:
        answer.prompt_ids, answer.completion_ids = ids_digest(prompt_ids), completion_ids
    return answer


async def serve_pass(
    base: str,
    videos: list[Path],
    questions: Sequence[str],
    concurrency: int,
    max_tokens: int,
    model: str = "m",
    headers: dict[str, str] | None = None,
    upload: bool = True,
    ids: bool = False,
) -> dict[str, Any]:
    """One pass, ``concurrency`` clients in video order: each video uploaded once when its first question is due
    (``upload``), or sent as a data URL with every question (plain vLLM)."""
    async with httpx.AsyncClient(base_url=base, timeout=600, headers=headers) as client:
        parts: dict[Path, asyncio.Task[dict[str, Any]]] = {}

        async def file_part(video: Path) -> dict[str, Any]:
            files = {"file": (video.name, video.read_bytes(), "video/mp4")}
            response = await client.post("/v1/files", files=files)
            response.raise_for_status()
            return {"type": "file", "file": {"file_id": response.json()["id"]}}

        queue: asyncio.Queue[tuple[Path, str]] = asyncio.Queue()
        for video in videos:
            for question in questions:
                queue.put_nowait((video, question))
        answers: list[Answer] = []

        async def worker() -> None:
            while not queue.empty():
                video, question = queue.get_nowait()
                if not upload:
                    part = _video_url(video)
                else:
                    if video not in parts:
                        parts[video] = asyncio.ensure_future(file_part(video))
                    part = await parts[video]
                answers.append(await _ask(client, model, part, question, max_tokens, ids))

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return _summary(time.perf_counter() - start, answers)


# --------------------------------------------------------------------------------------------------------
# the measurement


def default_paths(concurrency: Sequence[int], plain_vllm_server: bool = True) -> list[str]:
    """Every path the section knows, in the order the table lists them."""
    names = ["seed", "seed_cached"]
    if plain_vllm_server:
        names.append(f"vllm_c{max(concurrency)}")
    return names + [f"ours_c{c}" for c in concurrency]


def measure(
    videos: int = 1,
    questions: Sequence[int] = (1, 8, 18),
    concurrency: Sequence[int] = (1, 8),
    reps: int = 5,
    frames: int = 16,
    max_tokens: int = 8,
    clip: tuple[int, int] = (480, 640),
    plain_vllm_server: bool = True,
    pixels: tuple[int, int] | None = None,
    paths: Sequence[str] | None = None,
    check_questions: int = 2,
    protocol: Protocol | None = None,
) -> dict[str, Any]:
    """A token-id check pass (also the warm-up), then ``reps`` repetitions of every path at every question count."""
    from model_plugin.tiny import write_tiny_checkpoint

    protocol = protocol or Protocol()
    names = list(paths) if paths else default_paths(concurrency, plain_vllm_server)
    height, width = clip
    work = Path(tempfile.mkdtemp(prefix="bench-e2e-"))
    checkpoint = write_tiny_checkpoint(work / "tiny", seed=0)
    counter = iter(range(10**6))

    def fresh_videos() -> list[Path]:
        paths = []
        for _ in range(videos):
            i = next(counter)
            path = work / f"clip{i}.mp4"
            synthetic_mp4(path, CLIP_FRAMES, height, width, fps=CLIP_FPS, seed=1000 + i)
            paths.append(path)
        return paths

    common = ["--served-model-name", "m"]
    caps = ["--default-num-frames", str(frames), "--uploads-dir", str(work / "up"), *common]
    if pixels is not None:  # both sides get the same per-frame pixel bounds
        caps += ["--min-pixels-per-frame", str(pixels[0]), "--max-pixels-per-frame", str(pixels[1])]
    seed_loop = SeedLoop(checkpoint, frames, max_tokens, pixels) if any(n.startswith("seed") for n in names) else None
    passes: dict[str, list[dict[str, Any]]] = {}
    with contextlib.ExitStack() as stack:
        servers: dict[str, tuple[str, Any]] = {}  # "ours"/"vllm" -> (base URL, process)
        if any(n.startswith("ours") for n in names):
            servers["ours"] = stack.enter_context(running_process(ours(checkpoint, *caps), work / "ours.log"))
        if any(n.startswith("vllm") for n in names):
            command = plain_vllm(checkpoint, frames, *common)
            servers["vllm"] = stack.enter_context(running_process(command, work / "vllm.log"))

        def run_path(name: str, v: list[Path], q: Sequence[str], ids: bool = False) -> dict[str, Any]:
            """One pass of one path; the servers it does not use are stopped meanwhile."""
            kind, clients = _kind(name), _clients(name)
            others = [process for server, (_, process) in servers.items() if server != kind]
            with suspended(others):
                if seed_loop is not None and kind in ("seed", "seed_cached"):
                    return seed_loop.run(v, q, cache_frames=kind == "seed_cached")
                base = servers[kind][0]
                return asyncio.run(serve_pass(base, v, q, clients, max_tokens, upload=kind == "ours", ids=ids))

        # warm-up, not counted: every path on one shared video, its token ids checked before anything is timed
        shared = fresh_videos()
        check_runs = {name: run_path(name, shared, QUESTIONS[:check_questions], ids=True) for name in names}
        ids = check_token_ids(check_runs)
        print(f"token ids equal across {', '.join(ids['strict_paths'])}", flush=True)
        orders = shuffled_orders(names, reps * len(questions), protocol.seed)
        for rep in range(reps):
            for qi, q in enumerate(questions):
                for name in orders[rep * len(questions) + qi]:
                    label = f"rep {rep} q={q} {name}"
                    run = protocol.run_pass(label, lambda name=name, q=q: run_path(name, fresh_videos(), QUESTIONS[:q]))
                    passes.setdefault(f"q{q}/{name}", []).append(run)
                    print(f"{label}: {run['requests_per_s']:.2f} req/s", flush=True)
    meta = {
        "videos": videos,
        "questions": list(questions),
        "frames": frames,
        "clip": f"{CLIP_FRAMES} frames {width}x{height} at {CLIP_FPS} fps, H.264",
        "max_tokens": max_tokens,
        "pixels_per_frame": list(pixels) if pixels else "qwen-vl-utils defaults",
        "concurrency": list(concurrency),
        "paths": names,
        "reps": reps,
        "warmup": "one pass of every path on a shared video (the token-id check), not counted",
        "servers": "the servers a pass does not use are suspended (SIGSTOP) while it runs",
        "cpus": len(os.sched_getaffinity(0)),
        "torch_threads": _torch_threads(),
    }
    result = summarise(passes, meta, protocol)
    result["tokens"]["ids"] = ids
    return result


def _torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def check_token_ids(check_runs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Prompt and completion token ids per question, equal across the loops and our server, or a loud error.

    Plain vLLM builds its prompt with its own video loader: its ids are compared and the outcome recorded, not
    refused (a different prompt gives different ids). Returns what the page prints.
    """
    by_path: dict[str, dict[int, tuple[str, list[int]]]] = {}
    for path, run in check_runs.items():
        for answer in run["answers"]:
            if not answer["prompt_ids"] or answer["completion_ids"] is None:
                raise RuntimeError(f"{path} returned no token ids for question {answer['question']}")
            by_path.setdefault(path, {})[answer["question"]] = (answer["prompt_ids"], answer["completion_ids"])
    strict = [path for path in by_path if not path.startswith("vllm")]
    reference = by_path[strict[0]] if strict else {}
    for path in strict[1:]:
        if by_path[path] != reference:
            diff = {
                q: (by_path[path].get(q), reference.get(q)) for q in reference if by_path[path].get(q) != reference[q]
            }
            raise RuntimeError(
                f"token ids differ between {path} and {strict[0]} (question: (theirs, reference)): {diff}; "
                "the paths do not do the same work, so no timing is reported"
            )
    plain = {path: ids == reference for path, ids in by_path.items() if path.startswith("vllm")}
    return {
        "strict_paths": strict,
        "questions": len(reference),
        "plain_vllm_ids_equal": plain,
        "reference": {str(q): {"prompt_ids_sha256": p, "completion_ids": c} for q, (p, c) in reference.items()},
    }


def check_tokens(passes: dict[str, list[dict[str, Any]]], max_tokens: int) -> dict[str, Any]:
    """Per question: the prompt tokens each path saw, and every completion's length.

    Raises when the loops and our server disagree on a prompt or when a completion is not ``max_tokens`` long;
    plain vLLM's prompts (its own video loader) are recorded, and flagged when they differ, not refused.
    """
    prompts: dict[str, dict[int, set[int]]] = {}
    completions: set[int] = set()
    for key, runs in passes.items():
        path = key.split("/", 1)[1]
        for run in runs:
            for answer in run["answers"]:
                prompts.setdefault(path, {}).setdefault(answer["question"], set()).add(answer["prompt_tokens"])
                completions.add(answer["completion_tokens"])
    strict = {path: by_q for path, by_q in prompts.items() if not path.startswith("vllm")}
    reference = next(iter(strict.values()), {})
    for path, by_q in strict.items():
        if by_q != reference or any(len(counts) != 1 for counts in by_q.values()):
            raise RuntimeError(
                f"the paths saw different prompts (frames or sizes differ): {path} {by_q} vs {reference}"
            )
    if completions != {max_tokens}:
        raise RuntimeError(f"completion lengths {sorted(completions)}, expected exactly {max_tokens}")
    plain = {path: by_q for path, by_q in prompts.items() if path.startswith("vllm")}
    if not reference and plain:  # only plain vLLM ran: its counts are the reference
        reference = next(iter(plain.values()))
    return {
        "prompt_tokens_by_question": {str(q): sorted(c)[0] for q, c in reference.items()},
        "completion_tokens": max_tokens,
        "plain_vllm_prompts_equal": all(by_q == reference for by_q in plain.values()),
        "plain_vllm_prompt_tokens": {
            path: {str(q): sorted(c) for q, c in by_q.items()} for path, by_q in plain.items()
        },
    }


def identical_work(summary: dict[str, Any], tolerance: float) -> dict[str, Any] | None:
    """At one question per video the loop and the loop with a frame cache do the same work: compare their medians."""
    if "q1/seed" not in summary or "q1/seed_cached" not in summary:
        return None
    seed, cached = summary["q1/seed"]["requests_per_s"], summary["q1/seed_cached"]["requests_per_s"]
    ratio = cached / seed
    return {"ratio": ratio, "tolerance": tolerance, "within": abs(ratio - 1) <= tolerance}


def summarise(
    passes: dict[str, list[dict[str, Any]]], meta: dict[str, Any], protocol: Protocol | None = None
) -> dict[str, Any]:
    """Median and min–max requests/s per (question count, path), pooled TTFT, the identical-work check; token
    counts checked first."""
    protocol = protocol or Protocol()
    tokens = check_tokens(passes, meta["max_tokens"])
    summary = {}
    for key, runs in passes.items():
        ttfts = [t for run in runs for t in run["ttft_s"]]
        rates = [run["requests_per_s"] for run in runs]
        summary[key] = {
            "requests_per_s": statistics.median(rates),
            "requests_per_s_min": min(rates),
            "requests_per_s_max": max(rates),
            "ttft_p50_s": _percentile(ttfts, 50),
            "ttft_p95_s": _percentile(ttfts, 95),
        }
    same = identical_work(summary, protocol.tolerance)
    if same is not None and not same["within"]:
        protocol.flag(
            f"at q=1 the loop and the loop with a frame cache do identical work, yet their medians differ "
            f"{same['ratio']:.2f}x (limit ±{protocol.tolerance:.0%}): the machine was too noisy for these rows"
        )
    meta = {**meta, "protocol": protocol.meta()}
    return {"meta": meta, "tokens": tokens, "identical_work": same, "passes": passes, "summary": summary}


LABELS = {
    "seed": "original's loop (reproduced: see above), batch 1, frames decoded per question",
    "seed_cached": "original's loop (reproduced) + per-video frame cache",
}
BASELINES = {"seed": "vs original's loop", "seed_cached": "vs loop + frame cache", "vllm": "vs plain vLLM + plugin"}


def _kind(path: str) -> str:
    """``seed``, ``seed_cached``, ``vllm`` or ``ours`` (the server paths end in ``_c`` and their client count)."""
    return path if path in LABELS else path.rsplit("_c", 1)[0]


def _clients(path: str) -> int:
    return 1 if path in LABELS else int(path.rsplit("_c", 1)[1])


def _label(path: str) -> str:
    if path in LABELS:
        return LABELS[path]
    clients = _clients(path)
    if path.startswith("vllm"):
        return f"plain `vllm serve` + plugin, video with every question, {clients} clients"
    return f"spatial-mllm-serve, upload once + file ids, {clients} clients"


def _token_lines(tokens: dict[str, Any]) -> list[str]:
    ids = tokens.get("ids")
    lines = []
    if ids:
        plain = ", ".join(
            f"{path}: {'equal to them' if equal else 'different (its own video loader builds the prompt; recorded)'}"
            for path, equal in ids["plain_vllm_ids_equal"].items()
        )
        strict = ids["strict_paths"]
        agreed = f"equal across {', '.join(strict)}" if len(strict) > 1 else f"of {strict[0]} as the reference"
        lines.append(
            f"Token ids, checked before any timing on a shared video ({ids['questions']} questions, warm-up pass): "
            f"prompt and completion ids {agreed}" + (f"; plain vLLM's ids, {plain}" if plain else "") + "."
        )
    lines.append(
        f"Token counts of every timed request: the same prompt length per question "
        f"({', '.join(sorted(set(map(str, tokens['prompt_tokens_by_question'].values()))))} tokens) and exactly "
        f"{tokens['completion_tokens']} completion tokens; plain vLLM's prompts "
        + (
            "were equal too."
            if tokens["plain_vllm_prompts_equal"]
            else f"differ: {tokens['plain_vllm_prompt_tokens']}."
        )
    )
    return lines


def to_markdown(result: dict[str, Any]) -> str:
    meta, summary, tokens = result["meta"], result["summary"], result["tokens"]
    paths = meta["paths"]
    baselines = [(key, label) for key, label in BASELINES.items() if any(_kind(p) == key for p in paths)]
    lines = [
        f"{meta['videos']} video(s) ({meta['clip']}; pixels per frame: {meta.get('pixels_per_frame')}) x q "
        f"questions, {meta['frames']} frames per question, exactly {meta['max_tokens']} new tokens (greedy); "
        f"requests/s: median (min–max) of {meta['reps']} passes (order shuffled per repetition, seeded; each pass "
        f"on fresh videos; servers not in use suspended) after a warm-up pass; TTFT p50 over all their requests; "
        f"ratios of medians; {meta['cpus']} CPUs, torch threads {meta['torch_threads']}.",
        *_token_lines(tokens),
    ]
    same = result.get("identical_work")
    if same:
        lines.append(
            f"Identical work at q=1 (loop vs loop + frame cache): {same['ratio']:.2f}x, "
            + ("within" if same["within"] else "**outside**")
            + f" ±{same['tolerance']:.0%}."
        )
    lines += [
        "",
        "| q per video | path | requests/s | TTFT p50 | " + " | ".join(label for _, label in baselines) + " |",
        "| ---: | --- | ---: | ---: |" + " ---: |" * len(baselines),
    ]
    for q in meta["questions"]:
        for path in paths:
            row = summary[f"q{q}/{path}"]
            rate = row["requests_per_s"]
            ratios = []
            for key, _ in baselines:
                base = next(p for p in paths if _kind(p) == key)
                ratios.append("—" if base == path else f"{rate / summary[f'q{q}/{base}']['requests_per_s']:.2f}x")
            spread_text = f"{rate:.2f} ({row['requests_per_s_min']:.2f}–{row['requests_per_s_max']:.2f})"
            lines.append(
                f"| {q} | {_label(path)} | {spread_text} | {row['ttft_p50_s'] * 1e3:.0f} ms | "
                + " | ".join(ratios)
                + " |"
            )
    protocol_notes = notes(meta)
    return "\n".join(lines) + "\n" + (f"\n{protocol_notes}\n" if protocol_notes else "")


def plot(result: dict[str, Any], path: Path) -> None:
    """Requests/s against questions per video, one line per path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    meta, summary = result["meta"], result["summary"]
    fig, ax = plt.subplots(figsize=(6.5, 3.8), dpi=120)
    for name in meta["paths"]:
        ax.plot(meta["questions"], [summary[f"q{q}/{name}"]["requests_per_s"] for q in meta["questions"]], "o-",
                label=_label(name).replace("`", ""))  # fmt: skip
    ax.set(xlabel="questions per video", ylabel="requests / s", title="VSI-like load, tiny model, CPU")
    ax.set_xticks(meta["questions"])
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _size(text: str) -> tuple[int, int]:
    width, height = text.lower().split("x")
    return int(height), int(width)


def main(argv: Sequence[str] | None = None) -> None:
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")
    parser = argparse.ArgumentParser(prog="python -m bench.bench_end_to_end", description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=1)
    parser.add_argument("--questions", type=int, nargs="+", default=[1, 8, 18], help="questions per video, swept")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--max-tokens", type=int, default=8)
    parser.add_argument("--clip", type=_size, default=(480, 640), help="WxH of the synthetic clips")
    parser.add_argument(
        "--pixels", type=int, nargs=2, metavar=("MIN", "MAX"), help="per-frame pixel bounds for every path"
    )
    parser.add_argument("--no-plain-vllm", action="store_true", help="skip the plain `vllm serve` row")
    parser.add_argument(
        "--paths", nargs="+", help="only these paths (seed, seed_cached, vllm_cN, ours_cN; default: all of them)"
    )
    parser.add_argument("--json", type=Path, help="also write the result here")
    args = parser.parse_args(argv)
    if max(args.questions) > len(QUESTIONS):
        parser.error(f"--questions: at most {len(QUESTIONS)}")
    for path in args.paths or []:
        if not re.fullmatch(r"seed|seed_cached|(vllm|ours)_c[1-9][0-9]*", path):
            parser.error(f"--paths: {path!r} is none of seed, seed_cached, vllm_cN, ours_cN")
    result = measure(
        args.videos,
        args.questions,
        args.concurrency,
        args.reps,
        args.frames,
        args.max_tokens,
        args.clip,
        plain_vllm_server=not args.no_plain_vllm,
        pixels=tuple(args.pixels) if args.pixels else None,
        paths=args.paths,
    )
    emit(result, to_markdown, args.json)


if __name__ == "__main__":
    main()

"""End-to-end serving under a VSI-like load: our server at several concurrency levels vs the seed's loop.

``python -m bench.bench_end_to_end [--videos 6] [--questions 8] [--concurrency 1 4 8] [--reps 2] [--json PATH]``

Both sides run the same tiny checkpoint on the same kind of input: ``--videos`` short H.264 clips, ``--questions``
short questions each, 16 uniformly sampled frames per question (qwen-vl-utils' rules on both sides, so the same
frames and sizes), greedy decoding, ``--max-tokens`` new tokens.

* seed: what the original evaluation does, in this process: for every question, ``process_vision_info``
  decodes and samples the video from its file, the Qwen2.5-VL processor builds the inputs, and the reference
  model (transformers) runs ``generate`` with batch 1. TTFT is taken from a streamer (first new token).
* ours: ``python -m server`` in a child process; each video is uploaded once (``/v1/files``, timed) and its
  questions are sent by file id, streamed, by ``c`` concurrent clients pulling from one queue in video order.

Every repetition runs the seed pass and then each concurrency level, each on fresh videos (so no cache carries
over between passes; within a pass, later questions on a video do hit our caches, as they would in an
evaluation). Reported: requests/s (wall time of the pass, uploads included), TTFT p50/p95 measured from each
request's own start, and ours/seed throughput ratios. The seed's loop has no queue: a request starts when the
previous one ends, so its TTFT is pure service time; ours at ``c`` > 1 includes time spent batched with others.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from bench.media import synthetic_mp4
from bench.servers import ours, running

QUESTIONS = [
    "How many chairs are in this room? Answer with a number.",
    "What is the length of the longest dimension of the table, in centimetres?",
    "How far is the sofa from the door, in metres?",
    "Standing by the bed and facing the window, is the lamp to the left or to the right?",
    "Which object appears first in the video: the fridge or the television?",
    "What is the size of this room in square metres?",
    "Which is closer to the sink: the stove or the oven?",
    "How many doors does the room have?",
]
HEIGHT, WIDTH, CLIP_FRAMES, CLIP_FPS = 112, 140, 64, 8
MIN_PIXELS = 56 * 56
TARGET_RATIO = 4.0


def _percentile(values: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=np.float64), q)) if values else float("nan")


def _summary(wall_s: float, ttfts: list[float], n: int, prompt_tokens: set[int]) -> dict[str, Any]:
    return {
        "prompt_tokens": sorted(prompt_tokens),
        "wall_s": wall_s,
        "requests": n,
        "requests_per_s": n / wall_s,
        "ttft_s": ttfts,
        "ttft_p50_s": _percentile(ttfts, 50),
        "ttft_p95_s": _percentile(ttfts, 95),
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
    """The reference model answering one question at a time, with the seed's frame sampling per question."""

    def __init__(
        self, checkpoint: Path, frames: int, max_tokens: int, pixels: tuple[int, int] = (MIN_PIXELS, HEIGHT * WIDTH)
    ) -> None:
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
        self.min_pixels, self.max_pixels = pixels

    def answer(self, video: Path, question: str) -> tuple[float, int]:
        """(TTFT in s, prompt tokens) of one question, from reading the video file to the last token."""
        import torch

        from model_plugin.reference.inference import build_inputs

        clock = FirstTokenClock()
        element = {"type": "video", "video": str(video), "nframes": self.frames}
        element |= {"min_pixels": self.min_pixels, "max_pixels": self.max_pixels}
        messages = [{"role": "user", "content": [element, {"type": "text", "text": question}]}]
        _, videos = self.vision.process_vision_info(messages)
        frames = videos[0].round().to(torch.uint8)
        inputs = build_inputs(self.processor, [frames], question)  # no fps, as the seed: its 2.0 fps rule
        with torch.no_grad():
            self.model.generate(**inputs, max_new_tokens=self.max_tokens, do_sample=False, streamer=clock)
        return clock.ttft_s, int(inputs["input_ids"].shape[1])

    def run(self, videos: list[Path], questions: Sequence[str]) -> dict[str, Any]:
        ttfts, prompt_tokens = [], set()
        start = time.perf_counter()
        for video in videos:
            for question in questions:
                ttft, tokens = self.answer(video, question)
                ttfts.append(ttft)
                prompt_tokens.add(tokens)
        return _summary(time.perf_counter() - start, ttfts, len(ttfts), prompt_tokens)


# --------------------------------------------------------------------------------------------------------
# our server


async def _ask(
    client: httpx.AsyncClient, model: str, file_id: str, question: str, max_tokens: int
) -> tuple[float, int]:
    """(TTFT in s, prompt tokens) of one streamed question about an uploaded video (read to the end)."""
    body = {
        "model": model,
        "messages": [
            {
                "role": "user",
                "content": [{"type": "file", "file": {"file_id": file_id}}, {"type": "text", "text": question}],
            }
        ],
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    start = time.perf_counter()
    first, prompt_tokens = float("nan"), -1
    async with client.stream("POST", "/v1/chat/completions", json=body) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            if first != first and line.startswith("data: ") and '"content":"' in line and '"content":""' not in line:
                first = time.perf_counter() - start
            if line.startswith("data: {") and '"usage":{' in line:
                prompt_tokens = json.loads(line[6:])["usage"]["prompt_tokens"]
    return first, prompt_tokens


async def serve_pass(
    base: str,
    videos: list[Path],
    questions: Sequence[str],
    concurrency: int,
    max_tokens: int,
    model: str = "m",
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    """One pass: upload each video when its first question is due, ``concurrency`` clients, video order."""
    async with httpx.AsyncClient(base_url=base, timeout=600, headers=headers) as client:
        uploads: dict[Path, asyncio.Task[str]] = {}

        async def upload(video: Path) -> str:
            files = {"file": (video.name, video.read_bytes(), "video/mp4")}
            response = await client.post("/v1/files", files=files)
            response.raise_for_status()
            return response.json()["id"]

        queue: asyncio.Queue[tuple[Path, str]] = asyncio.Queue()
        for video in videos:
            for question in questions:
                queue.put_nowait((video, question))
        ttfts: list[float] = []
        prompt_tokens: set[int] = set()

        async def worker() -> None:
            while not queue.empty():
                video, question = queue.get_nowait()
                if video not in uploads:
                    uploads[video] = asyncio.ensure_future(upload(video))
                file_id = await uploads[video]
                ttft, tokens = await _ask(client, model, file_id, question, max_tokens)
                ttfts.append(ttft)
                prompt_tokens.add(tokens)

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return _summary(time.perf_counter() - start, ttfts, len(ttfts), prompt_tokens)


# --------------------------------------------------------------------------------------------------------
# the measurement


def measure(
    videos: int = 6,
    questions: int = 8,
    concurrency: Sequence[int] = (1, 4, 8),
    reps: int = 2,
    frames: int = 16,
    max_tokens: int = 8,
) -> dict[str, Any]:
    """Run ``reps`` repetitions of (seed pass, our pass at each concurrency); returns samples and medians."""
    from model_plugin.tiny import write_tiny_checkpoint

    asked = QUESTIONS[:questions]
    work = Path(tempfile.mkdtemp(prefix="bench-e2e-"))
    checkpoint = write_tiny_checkpoint(work / "tiny", seed=0)
    counter = iter(range(10**6))

    def fresh_videos() -> list[Path]:
        paths = []
        for _ in range(videos):
            i = next(counter)
            path = work / f"clip{i}.mp4"
            synthetic_mp4(path, CLIP_FRAMES, HEIGHT, WIDTH, fps=CLIP_FPS, seed=1000 + i)
            paths.append(path)
        return paths

    caps = ["--min-pixels-per-frame", str(MIN_PIXELS), "--max-pixels-per-frame", str(HEIGHT * WIDTH)]
    caps += ["--default-num-frames", str(frames), "--served-model-name", "m", "--uploads-dir", str(work / "up")]
    seed_loop = SeedLoop(checkpoint, frames, max_tokens)
    seed_loop.answer(fresh_videos()[0], asked[0])  # warm-up: first-call costs are not the subject
    passes: dict[str, list[dict[str, Any]]] = {"seed": [], **{f"c{c}": [] for c in concurrency}}
    with running(ours(checkpoint, *caps), work / "server.log") as base:
        asyncio.run(serve_pass(base, fresh_videos()[:1], asked[:2], 1, max_tokens))  # warm-up
        for rep in range(reps):
            passes["seed"].append(seed_loop.run(fresh_videos(), asked))
            print(f"rep {rep}: seed {passes['seed'][-1]['requests_per_s']:.2f} req/s", flush=True)
            for c in concurrency:
                passes[f"c{c}"].append(asyncio.run(serve_pass(base, fresh_videos(), asked, c, max_tokens)))
                print(f"rep {rep}: ours c={c} {passes[f'c{c}'][-1]['requests_per_s']:.2f} req/s", flush=True)
    meta = {
        "videos": videos,
        "questions_per_video": len(asked),
        "frames": frames,
        "clip": f"{CLIP_FRAMES} frames {WIDTH}x{HEIGHT} at {CLIP_FPS} fps, H.264",
        "max_tokens": max_tokens,
        "concurrency": list(concurrency),
        "reps": reps,
        "cpus": len(os.sched_getaffinity(0)),
    }
    return summarise(passes, meta)


def summarise(passes: dict[str, list[dict[str, Any]]], meta: dict[str, Any]) -> dict[str, Any]:
    """Median requests/s per path and pooled TTFT percentiles; refuses passes that saw different prompts."""
    tokens = {name: sorted({t for run in runs for t in run["prompt_tokens"]}) for name, runs in passes.items()}
    if len({tuple(t) for t in tokens.values()}) != 1:
        raise RuntimeError(f"the paths saw different prompts (frames or sizes differ): prompt tokens {tokens}")
    summary = {}
    for name, runs in passes.items():
        ttfts = [t for run in runs for t in run["ttft_s"]]
        summary[name] = {
            "requests_per_s": statistics.median(run["requests_per_s"] for run in runs),
            "ttft_p50_s": _percentile(ttfts, 50),
            "ttft_p95_s": _percentile(ttfts, 95),
        }
    return {"meta": {**meta, "prompt_tokens": tokens["seed"]}, "passes": passes, "summary": summary}


def to_markdown(result: dict[str, Any]) -> str:
    meta, summary = result["meta"], result["summary"]
    seed_rps = summary["seed"]["requests_per_s"]
    lines = [
        f"{meta['videos']} videos x {meta['questions_per_video']} questions ({meta['clip']}), {meta['frames']} frames "
        f"per question, {meta['max_tokens']} new tokens, greedy; median requests/s of {meta['reps']} passes, TTFT "
        "percentiles over all their requests.",
        "",
        "| path | requests/s | TTFT p50 | TTFT p95 | throughput vs seed |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for name, row in summary.items():
        label = "seed loop (HF generate, batch 1)" if name == "seed" else f"spatial-mllm-serve, {name[1:]} concurrent"
        lines.append(
            f"| {label} | {row['requests_per_s']:.2f} | {row['ttft_p50_s'] * 1e3:.0f} ms | "
            f"{row['ttft_p95_s'] * 1e3:.0f} ms | {row['requests_per_s'] / seed_rps:.1f}x |"
        )
    best = max((name for name in summary if name != "seed"), key=lambda name: summary[name]["requests_per_s"])
    ratio = summary[best]["requests_per_s"] / seed_rps
    verdict = "met" if ratio >= TARGET_RATIO else "not met"
    lines += [
        "",
        f"Target: {TARGET_RATIO:g}x the seed's throughput; best {ratio:.1f}x at {best[1:]} clients: {verdict}.",
    ]
    return "\n".join(lines) + "\n"


def plot(result: dict[str, Any], path: Path) -> None:
    """Requests/s against concurrency, the seed's loop as a line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary = result["summary"]
    levels = result["meta"]["concurrency"]
    fig, ax = plt.subplots(figsize=(5.5, 3.5), dpi=120)
    ax.plot(levels, [summary[f"c{c}"]["requests_per_s"] for c in levels], "o-", label="spatial-mllm-serve")
    ax.axhline(summary["seed"]["requests_per_s"], color="grey", ls="--", label="seed loop (batch 1)")
    ax.set(xlabel="concurrent clients", ylabel="requests / s", title="VSI-like load, tiny model, CPU")
    ax.set_xticks(levels)
    ax.set_ylim(bottom=0)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> None:
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")
    parser = argparse.ArgumentParser(prog="python -m bench.bench_end_to_end", description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=6)
    parser.add_argument("--questions", type=int, default=8, choices=range(1, len(QUESTIONS) + 1))
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 8])
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--max-tokens", type=int, default=8)
    parser.add_argument("--json", type=Path, help="also write the result here")
    args = parser.parse_args(argv)
    result = measure(args.videos, args.questions, args.concurrency, args.reps, args.frames, args.max_tokens)
    print(to_markdown(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()

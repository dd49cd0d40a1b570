"""Our layer's overhead and the cache on follow-up questions, measured side by side on CPU.

``python -m bench.bench_server_overhead [--rounds 12] [--frames 16] [--json PATH]``

1. Overhead: the same tiny checkpoint and the same 16-frame videos through our server and through plain
   ``vllm serve`` (``video_url`` data URLs on both), requests interleaved in a seeded shuffled order per round
   (:mod:`bench.protocol`: calibrated rounds, the other server stopped while one is timed), a
   fresh video each round so no cache helps either side. Both sides decode every frame of a 16-frame video at
   its own size, so the engine work is the same; the ratio is the cost of our routes (decoding, hashing,
   sampling, limits) relative to vLLM's own media path.
2. Follow-up: on our server, the first question about a video vs a second, different question about the same
   video (uploaded once, asked by file id): time to first token, so the sampling cache and vLLM's encoder and
   prefix caches show.

Prints medians and ratios as a markdown table (``python -m bench.report`` puts it into docs/BENCHMARKS.md).
"""

from __future__ import annotations

import argparse
import base64
import json
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

from bench.media import synthetic_mp4
from bench.protocol import Protocol, notes, shuffled_orders, spread
from bench.servers import ours, plain_vllm, running_process, suspended

MAX_TOKENS = 8
HEIGHT, WIDTH = 112, 140


def _timed_stream(base: str, model: str, content: list[dict]) -> tuple[float, float]:
    """(time to first content token, total) of one streamed chat completion, in seconds."""
    body = {
        "model": model,
        "messages": [{"role": "user", "content": content}],
        "max_tokens": MAX_TOKENS,
        "temperature": 0,
        "stream": True,
    }
    start = time.perf_counter()
    first = None
    with httpx.stream("POST", f"{base}/v1/chat/completions", json=body, timeout=300) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if first is None and line.startswith("data: ") and '"content":"' in line and '"content":""' not in line:
                first = time.perf_counter() - start
    return first or float("nan"), time.perf_counter() - start


def _video_part(data: bytes) -> dict:
    return {"type": "video_url", "video_url": {"url": "data:video/mp4;base64," + base64.b64encode(data).decode()}}


def measure(rounds: int = 12, frames: int = 16) -> dict[str, Any]:
    """Overhead rounds (both servers, alternating order) then follow-up rounds (ours); raw samples in seconds."""
    from model_plugin.tiny import write_tiny_checkpoint

    work = Path(tempfile.mkdtemp(prefix="bench-overhead-"))
    checkpoint = write_tiny_checkpoint(work / "tiny", seed=0)
    # a video never sent before for every pass, re-runs included (the protocol re-runs a pass the machine's speed
    # moved around): a video sent again would hit our frame cache and vLLM's caches, which these rows must not see
    warm_up = synthetic_mp4(work / "warm-up.mp4", frames, HEIGHT, WIDTH, seed=99)
    unsent = iter([synthetic_mp4(work / f"v{i}.mp4", frames, HEIGHT, WIDTH, seed=100 + i) for i in range(4 * rounds)])
    question = {"type": "text", "text": "How many chairs are in this room?"}
    caps = ["--min-pixels-per-frame", "3136", "--max-pixels-per-frame", str(HEIGHT * WIDTH)]
    caps += ["--default-num-frames", str(frames), "--served-model-name", "m", "--uploads-dir", str(work / "up")]

    with (
        running_process(ours(checkpoint, *caps), work / "ours.log") as (our_base, our_process),
        running_process(plain_vllm(checkpoint, frames, "--served-model-name", "m"), work / "vllm.log") as (
            vllm_base,
            vllm_process,
        ),
    ):
        # warm both (first request pays one-time costs)
        _timed_stream(our_base, "m", [_video_part(warm_up), question])
        _timed_stream(vllm_base, "m", [_video_part(warm_up), question])
        protocol = Protocol()
        bases = {"ours": our_base, "vllm": vllm_base}
        idle = {"ours": [vllm_process], "vllm": [our_process]}  # stopped while the other is timed
        totals: dict[str, list[float]] = {"ours": [], "vllm": []}
        for i, order in enumerate(shuffled_orders(list(bases), rounds, protocol.seed)):

            def one_round(order: list[str] = order) -> dict[str, float]:
                video, times = next(unsent), {}
                for name in order:
                    with suspended(idle[name]):
                        times[name] = _timed_stream(bases[name], "m", [_video_part(video), question])[1]
                return times

            for name, seconds in protocol.run_pass(f"overhead round {i}", one_round).items():
                totals[name].append(seconds)

        first_ttft, follow_ttft = [], []

        def follow_up() -> tuple[float, float]:
            """Upload a video never sent before (not timed), then ask two questions about it by file id."""
            upload = httpx.post(
                f"{our_base}/v1/files", files={"file": ("v.mp4", next(unsent), "video/mp4")}, timeout=60
            )
            part = {"type": "file", "file": {"file_id": upload.json()["id"]}}
            first = _timed_stream(our_base, "m", [part, question])[0]
            return first, _timed_stream(our_base, "m", [part, {"type": "text", "text": "And the tables?"}])[0]

        for i in range(rounds):
            with suspended([vllm_process]):
                first, follow = protocol.run_pass(f"follow-up round {i}", follow_up)
            first_ttft.append(first)
            follow_ttft.append(follow)
    samples = {"ours": totals["ours"], "vllm": totals["vllm"], "first_ttft": first_ttft, "follow_ttft": follow_ttft}
    return {
        "meta": {
            "rounds": rounds,
            "frames": frames,
            "height": HEIGHT,
            "width": WIDTH,
            "max_tokens": MAX_TOKENS,
            "protocol": protocol.meta(),
        },
        "samples_s": samples,
        "median_ms": {name: statistics.median(values) * 1000 for name, values in samples.items()},
    }


def to_markdown(result: dict[str, Any]) -> str:
    meta, ms, samples = result["meta"], result["median_ms"], result["samples_s"]

    def cell(name: str) -> str:
        return spread(samples[name], ".0f", " ms", scale=1e3)

    video = f"{meta['frames']} frames {meta['height']}x{meta['width']}"
    setup = f"{meta['rounds']} rounds, {video}, {meta['max_tokens']} tokens"
    return (
        "\n".join(
            [
                f"| measure ({setup}; order shuffled per round, seeded) | median (min–max) | ratio of medians |",
                "| --- | ---: | ---: |",
                f"| request latency, plain `vllm serve` | {cell('vllm')} | 1.00 |",
                f"| request latency, `spatial-mllm-serve` | {cell('ours')} | {ms['ours'] / ms['vllm']:.2f}x |",
                f"| TTFT, first question on a video (file id) | {cell('first_ttft')} | 1.00 |",
                f"| TTFT, follow-up question, same video | {cell('follow_ttft')} | "
                f"{ms['follow_ttft'] / ms['first_ttft']:.2f}x |",
            ]
        )
        + "\n"
        + ("\n" + notes(meta) + "\n" if notes(meta) else "")
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_server_overhead")
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--json", type=Path, help="also write the result here")
    args = parser.parse_args(argv)
    result = measure(args.rounds, args.frames)
    print(to_markdown(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()

"""Our layer's overhead and the cache on follow-up questions, measured side by side on CPU.

``python -m bench.bench_server_overhead [--rounds 12] [--frames 16]``

1. Overhead: the same tiny checkpoint and the same 16-frame videos through our server and through plain
   ``vllm serve`` (``video_url`` data URLs on both), requests interleaved and alternating which goes first, a
   fresh video each round so no cache helps either side. Both sides decode every frame of a 16-frame video at
   its own size, so the engine work is the same; the ratio is the cost of our routes (decoding, hashing,
   sampling, limits) relative to vLLM's own media path.
2. Follow-up: on our server, the first question about a video vs a second, different question about the same
   video (uploaded once, asked by file id): time to first token, so the sampling cache and vLLM's encoder and
   prefix caches show.

Prints medians and ratios as a markdown table (pasted into docs/BENCHMARKS.md).
"""

from __future__ import annotations

import argparse
import base64
import statistics
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

from bench.servers import ours, plain_vllm, running

MAX_TOKENS = 8
HEIGHT, WIDTH = 112, 140


def _video(path: Path, frames: int, seed: int) -> bytes:
    import av

    from model_plugin.reference.demo import synthetic_video

    pixels = np.ascontiguousarray(synthetic_video(frames, HEIGHT, WIDTH, seed=seed).permute(0, 2, 3, 1).numpy())
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=4)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        for frame in pixels:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    return path.read_bytes()


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


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_server_overhead")
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--frames", type=int, default=16)
    args = parser.parse_args()

    from model_plugin.tiny import write_tiny_checkpoint

    work = Path(tempfile.mkdtemp(prefix="bench-overhead-"))
    checkpoint = write_tiny_checkpoint(work / "tiny", seed=0)
    videos = [_video(work / f"v{i}.mp4", args.frames, seed=100 + i) for i in range(2 * args.rounds + 1)]
    question = {"type": "text", "text": "How many chairs are in this room?"}
    caps = ["--min-pixels-per-frame", "3136", "--max-pixels-per-frame", str(HEIGHT * WIDTH)]
    caps += ["--default-num-frames", str(args.frames), "--served-model-name", "m", "--uploads-dir", str(work / "up")]

    with (
        running(ours(checkpoint, *caps), work / "ours.log") as our_base,
        running(plain_vllm(checkpoint, args.frames, "--served-model-name", "m"), work / "vllm.log") as vllm_base,
    ):
        # warm both (first request pays one-time costs)
        _timed_stream(our_base, "m", [_video_part(videos[-1]), question])
        _timed_stream(vllm_base, "m", [_video_part(videos[-1]), question])
        totals: dict[str, list[float]] = {"ours": [], "vllm": []}
        for i in range(args.rounds):
            order = [("ours", our_base), ("vllm", vllm_base)][:: 1 if i % 2 == 0 else -1]
            for name, base in order:
                totals[name].append(_timed_stream(base, "m", [_video_part(videos[i]), question])[1])

        first_ttft, follow_ttft = [], []
        for i in range(args.rounds, 2 * args.rounds):
            upload = httpx.post(
                f"{our_base}/v1/files", files={"file": (f"v{i}.mp4", videos[i], "video/mp4")}, timeout=60
            ).json()
            part = {"type": "file", "file": {"file_id": upload["id"]}}
            first_ttft.append(_timed_stream(our_base, "m", [part, question])[0])
            follow_ttft.append(_timed_stream(our_base, "m", [part, {"type": "text", "text": "And the tables?"}])[0])

    ours_ms, vllm_ms = (statistics.median(totals[k]) * 1000 for k in ("ours", "vllm"))
    first_ms, follow_ms = statistics.median(first_ttft) * 1000, statistics.median(follow_ttft) * 1000
    setup = f"{args.rounds} rounds, {args.frames} frames {HEIGHT}x{WIDTH}, {MAX_TOKENS} tokens"
    print(f"| measure ({setup}) | median | ratio |")
    print("| --- | --- | --- |")
    print(f"| request latency, plain vllm serve | {vllm_ms:.0f} ms | 1.00 |")
    print(f"| request latency, spatial-mllm-serve | {ours_ms:.0f} ms | {ours_ms / vllm_ms:.2f}x |")
    print(f"| TTFT, first question on a video (file id) | {first_ms:.0f} ms | 1.00 |")
    print(f"| TTFT, follow-up question, same video | {follow_ms:.0f} ms | {follow_ms / first_ms:.2f}x |")


if __name__ == "__main__":
    main()

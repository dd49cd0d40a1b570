"""Engine start time and peak resident memory of one 16-frame request, tiny checkpoint, vLLM on CPU.

``python -m bench.engine_footprint [--frames 16] [--height 252] [--width 336]``

Peak RSS is read from the kernel's high-water mark (VmHWM) of the engine's processes after the request, so it
covers the engine core and the worker that runs the ViT, the spatial encoder and the LLM.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path


def _peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main() -> None:
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    parser = argparse.ArgumentParser(prog="python -m bench.engine_footprint")
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--height", type=int, default=252)
    parser.add_argument("--width", type=int, default=336)
    args = parser.parse_args()

    import psutil
    from transformers import AutoProcessor
    from vllm import LLM, SamplingParams

    from model_plugin.reference.demo import synthetic_video
    from model_plugin.reference.inference import identity_size_bounds
    from model_plugin.tiny import write_tiny_checkpoint

    checkpoint = write_tiny_checkpoint(Path(tempfile.mkdtemp()) / "tiny")
    processor = AutoProcessor.from_pretrained(checkpoint)
    start = time.perf_counter()
    llm = LLM(
        model=str(checkpoint),
        dtype="float32",
        max_model_len=8192,
        enforce_eager=True,
        limit_mm_per_prompt={
            "video": {"count": 1, "num_frames": args.frames, "width": args.width, "height": args.height}
        },
    )
    started = time.perf_counter() - start
    video = synthetic_video(frames=args.frames, height=args.height, width=args.width)
    messages = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": "How many chairs?"}]}]
    prompt = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    metadata = {"fps": 2.0, "total_num_frames": args.frames, "frames_indices": list(range(args.frames))}
    request = {
        "prompt": prompt,
        "multi_modal_data": {"video": (video.permute(0, 2, 3, 1).numpy(), metadata)},
        "mm_processor_kwargs": {"size": identity_size_bounds(args.height, args.width), "do_sample_frames": False},
    }
    t0 = time.perf_counter()
    (out,) = llm.generate([request], SamplingParams(temperature=0, max_tokens=16), use_tqdm=False)
    latency = time.perf_counter() - t0
    children = psutil.Process().children(recursive=True)
    peaks = {p.pid: (p.name(), _peak_rss_mib(p.pid)) for p in children}
    print(f"engine start: {started:.1f} s")
    tokens = len(out.prompt_token_ids)
    print(f"request: {args.frames} frames {args.height}x{args.width}, {tokens} prompt tokens, {latency:.2f} s")
    for pid, (name, mib) in sorted(peaks.items(), key=lambda kv: -kv[1][1]):
        print(f"peak RSS {name} (pid {pid}): {mib:.0f} MiB")
    print(f"peak RSS main process: {_peak_rss_mib(os.getpid()):.0f} MiB")


if __name__ == "__main__":
    main()

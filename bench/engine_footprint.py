"""Peak memory of one 16-frame request with the aggregator keeping one layer (ours) vs all layers (the original).

``python -m bench.engine_footprint [--frames 16] [--height 252] [--width 336] [--reps 2] [--spatial-depth N]
[--json PATH]``

Our plugin asks the VGGT aggregator for the connector's layer only (``layers=[layer_idx]``); the original VGGT
returns every layer and the original Spatial-MLLM then picks one. Both are measured on the tiny checkpoint (fp32,
vLLM on CPU, ``enforce_eager``), each run in a fresh subprocess (fresh peak), the two variants alternating,
``--reps`` runs each:

* **engine**: vLLM in-process (``VLLM_ENABLE_V1_MULTIPROCESSING=0``: engine core and worker live in the
  bench's process, checked by the pid that runs the aggregator), ``VLLM_CPU_KVCACHE_SPACE=1``. Right before the
  request the process's peak RSS is reset (``5`` into ``/proc/self/clear_refs`` sets VmHWM back to the current
  RSS, Linux >= 4.0); VmHWM after the request is its peak, and the rise over the RSS before it is what the
  request added. Engine start and request latency come along.
* **aggregator alone**: the spatial encoder in plain torch on the same frames, after a small warm-up call; peak
  RSS rise over the RSS before the call. The engine's absolute peak is mostly the 1 GiB KV cache and the
  weights; the rises are the comparable figures.

RSS only shows allocations that need new pages, so each child runs with ``MALLOC_MMAP_THRESHOLD_=131072`` (blocks
of 128 KiB and more are mapped and unmapped on their own) and calls ``malloc_trim(0)`` before the reset (free
heap pages go back to the kernel). Without that, the request reuses memory freed during engine start and the
difference between the variants hides in the noise (seen: 24 extra 3.4 MiB layer outputs raising RSS by 0-24
MiB instead of 82). glibc only: vLLM's own multiprocess CPU worker preloads tcmalloc, not measured here.

The "all layers" variant wraps ``Aggregator.forward`` (in both parts) so it computes and holds every layer,
then hands back the asked one, as the original does; both variants must generate the same tokens and the same
aggregator output. The analytic size of the kept outputs (layers x B x S x P x 2C x bytes) is reported for the
checkpoint measured and for VGGT-1B at real size (24 layers, 2C = 2048, bf16, 16 frames of 476x644 -> 34x46
patches + 5 special tokens). The tiny checkpoint's aggregator has 2 layers, so "all" keeps just one more;
``--spatial-depth 24`` writes the tiny checkpoint with VGGT's real depth to show the layer count's effect.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.protocol import spread

VARIANTS = ("one", "all")
REPO_ROOT = Path(__file__).resolve().parents[1]
MAX_TOKENS = 16
VGGT_1B = {"layers": 24, "channels_2c": 2048, "bytes": 2, "frames": 16, "height": 476, "width": 644, "patch": 14}
SPECIAL_TOKENS = 5  # camera + 4 registers per frame
# Fresh-process settings for both variants alike (why the malloc one: see the module docstring).
CHILD_ENV = {"MALLOC_MMAP_THRESHOLD_": "131072", "VLLM_ENABLE_V1_MULTIPROCESSING": "0", "VLLM_CPU_KVCACHE_SPACE": "1"}


def _status_mib(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"{field} missing from /proc/self/status")


def reset_peak_rss() -> None:
    """Hand free heap memory back to the kernel, then set VmHWM back to the current RSS.

    The next VmHWM reading is then the peak of what runs in between. Without ``malloc_trim`` the request would
    fill holes left in the heap by engine start (already resident, so unseen) and its rise would read low.
    """
    gc.collect()
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    Path("/proc/self/clear_refs").write_text("5")


def use_layers(variant: str) -> list[int]:
    """Route every aggregator call through one wrapper; ``all`` computes and holds every layer, then picks.

    Returns the list the wrapper appends its process id to, so a run can show where the aggregator ran.
    """
    from model_plugin.vggt.aggregator import Aggregator

    forward = Aggregator.forward
    pids: list[int] = []

    def wrapped(self: Aggregator, images: Any, layers: Sequence[int] | None = None) -> tuple[list[Any], int]:
        pids.append(os.getpid())
        if variant == "one" or layers is None:
            return forward(self, images, layers)
        every, patch_start_idx = forward(self, images, None)
        return [every[i] for i in self.resolve_layers(layers)], patch_start_idx

    Aggregator.forward = wrapped  # type: ignore[method-assign]
    return pids


def kept_bytes(
    layers: int, frames: int, height: int, width: int, channels_2c: int, nbytes: int, patch: int = 14
) -> int:
    """Bytes of ``layers`` aggregator outputs [B=1, S, P, 2C]: what the aggregator holds when it returns."""
    tokens = (height // patch) * (width // patch) + SPECIAL_TOKENS
    return layers * frames * tokens * channels_2c * nbytes


def run_engine(checkpoint: Path, variant: str, frames: int, height: int, width: int) -> dict[str, Any]:
    """One engine, one request; peak RSS of the request (this process holds engine core and worker)."""
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
    pids = use_layers(variant)
    from transformers import AutoProcessor
    from vllm import LLM, SamplingParams

    from model_plugin.reference.demo import synthetic_video
    from model_plugin.reference.inference import identity_size_bounds

    processor = AutoProcessor.from_pretrained(checkpoint)
    start = time.perf_counter()
    llm = LLM(
        model=str(checkpoint),
        dtype="float32",
        max_model_len=8192,
        enforce_eager=True,
        seed=0,
        limit_mm_per_prompt={"video": {"count": 1, "num_frames": frames, "width": width, "height": height}},
    )
    started = time.perf_counter() - start
    calls_at_start = len(pids)
    video = synthetic_video(frames=frames, height=height, width=width)
    messages = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": "How many chairs?"}]}]
    prompt = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    metadata = {"fps": 2.0, "total_num_frames": frames, "frames_indices": list(range(frames))}
    request = {
        "prompt": prompt,
        "multi_modal_data": {"video": (video.permute(0, 2, 3, 1).numpy(), metadata)},
        "mm_processor_kwargs": {"size": identity_size_bounds(height, width), "do_sample_frames": False},
    }
    start_peak = _status_mib("VmHWM")
    reset_peak_rss()
    before = _status_mib("VmRSS")
    after_reset = _status_mib("VmHWM")
    t0 = time.perf_counter()
    (out,) = llm.generate([request], SamplingParams(temperature=0, max_tokens=MAX_TOKENS), use_tqdm=False)
    latency = time.perf_counter() - t0
    peak = _status_mib("VmHWM")
    return {
        "engine_start_s": started,
        "latency_s": latency,
        "prompt_tokens": len(out.prompt_token_ids),
        "generated_token_ids": list(out.outputs[0].token_ids),
        "start_peak_mib": start_peak,
        "rss_before_mib": before,
        "hwm_after_reset_mib": after_reset,
        "peak_mib": peak,
        "rise_mib": peak - before,
        "aggregator_calls_at_start": calls_at_start,
        "aggregator_calls": len(pids) - calls_at_start,
        "aggregator_in_this_process": bool(pids) and set(pids) == {os.getpid()},
    }


def run_aggregator(checkpoint: Path, variant: str, frames: int, height: int, width: int) -> dict[str, Any]:
    """The spatial encoder alone in torch on CPU: peak RSS rise of one call on the request's frames."""
    import torch

    from model_plugin.config import SpatialMLLMConfig
    from model_plugin.reference.demo import synthetic_video
    from model_plugin.spatial_encoder import SpatialEncoder, frames_to_unit_range

    use_layers(variant)
    config = SpatialMLLMConfig.from_pretrained(checkpoint)
    torch.manual_seed(0)
    encoder = SpatialEncoder(config.spatial_config, with_heads=False).eval()
    layer = config.spatial_embeds_layer_idx
    video = frames_to_unit_range(synthetic_video(frames=frames, height=height, width=width))
    with torch.inference_mode():
        encoder([video[:2, :, :28, :28]], layer)  # warm-up: kernels and threads, not the request's sizes
        reset_peak_rss()
        before = _status_mib("VmRSS")
        start = time.perf_counter()
        (out,), _ = encoder([video], layer)
        seconds = time.perf_counter() - start
        peak = _status_mib("VmHWM")
    return {
        "seconds": seconds,
        "rss_before_mib": before,
        "peak_mib": peak,
        "rise_mib": peak - before,
        "output_shape": list(out.shape),
        "output_sha256": hashlib.sha256(out.contiguous().numpy().tobytes()).hexdigest(),
    }


def _child(checkpoint: Path, variant: str, part: str, frames: int, height: int, width: int, log: Path) -> dict:
    """Run one part in a fresh interpreter (``--variant``), return its JSON."""
    out = log.with_suffix(".json")
    command = [sys.executable, "-m", "bench.engine_footprint", "--variant", variant, "--part", part]
    command += ["--checkpoint", str(checkpoint), "--frames", str(frames), "--height", str(height)]
    command += ["--width", str(width), "--json", str(out)]
    env = {**os.environ, **CHILD_ENV}
    with log.open("w") as fh:
        done = subprocess.run(command, cwd=REPO_ROOT, env=env, stdout=fh, stderr=subprocess.STDOUT, timeout=900)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}):\n{log.read_text()[-4000:]}")
    return json.loads(out.read_text())


def _median(runs: list[dict[str, Any]], key: str) -> float:
    return statistics.median(run[key] for run in runs)


def measure(
    frames: int = 16, height: int = 252, width: int = 336, reps: int = 2, spatial_depth: int | None = None
) -> dict[str, Any]:
    """Both variants, alternating, ``reps`` fresh processes each for the engine and for the aggregator alone."""
    import model_plugin.tiny as tiny
    from model_plugin.tiny import write_tiny_checkpoint

    runs: dict[str, dict[str, list[dict[str, Any]]]] = {
        part: {v: [] for v in VARIANTS} for part in ("engine", "aggregator")
    }
    sizes = tiny.SPATIAL
    if spatial_depth is not None:  # the tiny checkpoint with a deeper aggregator; nothing else changes
        tiny.SPATIAL = {**sizes, "depth": spatial_depth}
    with tempfile.TemporaryDirectory(prefix="bench-footprint-") as tmp:
        work = Path(tmp)
        try:
            checkpoint = write_tiny_checkpoint(work / "tiny", seed=0)
        finally:
            tiny.SPATIAL = sizes
        spatial = json.loads((checkpoint / "config.json").read_text())["spatial_config"]
        for rep in range(reps):
            for variant in VARIANTS if rep % 2 == 0 else VARIANTS[::-1]:
                for part in ("aggregator", "engine"):
                    log = work / f"{part}-{variant}-{rep}.log"
                    result = _child(checkpoint, variant, part, frames, height, width, log)
                    runs[part][variant].append(result)
                    print(f"{part} {variant} rep {rep}: peak {result['peak_mib']:.0f} MiB", file=sys.stderr, flush=True)

    engine, aggregator = runs["engine"], runs["aggregator"]
    keys = {"engine": ("peak_mib", "rise_mib", "rss_before_mib", "engine_start_s", "latency_s"),
            "aggregator": ("peak_mib", "rise_mib", "seconds")}  # fmt: skip
    medians = {part: {v: {k: _median(runs[part][v], k) for k in keys[part]} for v in VARIANTS} for part in runs}
    depth, c2 = spatial["depth"], 2 * spatial["embed_dim"]
    analytic = {
        "measured": {v: kept_bytes(n, frames, height, width, c2, 4) for v, n in (("one", 1), ("all", depth))},
        "vggt_1b": {
            v: kept_bytes(n, *(VGGT_1B[k] for k in ("frames", "height", "width", "channels_2c", "bytes")))
            for v, n in (("one", 1), ("all", VGGT_1B["layers"]))
        },
    }
    tokens = {tuple(run["generated_token_ids"]) for runs_ in engine.values() for run in runs_}
    outputs = {run["output_sha256"] for runs_ in aggregator.values() for run in runs_}
    meta = {
        "frames": frames,
        "height": height,
        "width": width,
        "reps": reps,
        "order": "fresh subprocess per run; variants alternate, first variant swaps each rep",
        "dtype": "float32",
        "max_tokens": MAX_TOKENS,
        "checkpoint": "tiny (model_plugin.tiny), seed 0",
        "spatial_depth": depth,
        "spatial_embed_dim": spatial["embed_dim"],
        "child_env": CHILD_ENV,
        "vggt_1b": VGGT_1B,
    }
    checks = {
        "same_generated_tokens": len(tokens) == 1,
        "same_aggregator_output": len(outputs) == 1,
        "aggregator_in_engine_process": all(run["aggregator_in_this_process"] for r in engine.values() for run in r),
    }
    return {"meta": meta, "checks": checks, "runs": runs, "median": medians, "analytic_bytes": analytic}


def to_markdown(result: dict[str, Any]) -> str:
    meta, med, analytic = result["meta"], result["median"], result["analytic_bytes"]
    eng, agg = med["engine"], med["aggregator"]
    mib = 2**20
    lines = [
        f"One {meta['frames']}-frame {meta['height']}x{meta['width']} request, tiny checkpoint (aggregator depth "
        f"{meta['spatial_depth']}, 2C = {2 * meta['spatial_embed_dim']}), fp32, vLLM on CPU in-process; "
        f"medians (min–max) of {meta['reps']} fresh processes per variant, alternating. Same generated tokens both "
        f"ways: {'yes' if result['checks']['same_generated_tokens'] else 'NO'}.",
        "",
        "| aggregator keeps | engine peak RSS | request's rise | aggregator alone: rise | kept outputs (analytic) "
        "| VGGT-1B real size (analytic) |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for variant, label in (("one", "the connector's layer (ours)"), ("all", "every layer (original)")):
        runs = result["runs"]
        peak = spread([run["peak_mib"] for run in runs["engine"][variant]], ".0f", " MiB")
        rise = spread([run["rise_mib"] for run in runs["engine"][variant]], ".1f", " MiB")
        alone = spread([run["rise_mib"] for run in runs["aggregator"][variant]], ".1f", " MiB")
        lines.append(
            f"| {label} | {peak} | {rise} | {alone} | {analytic['measured'][variant] / mib:.1f} MiB | "
            f"{analytic['vggt_1b'][variant] / mib:.0f} MiB |"
        )
    ratios = [eng["all"]["peak_mib"] / eng["one"]["peak_mib"], eng["all"]["rise_mib"] / eng["one"]["rise_mib"]]
    ratios += [agg["all"]["rise_mib"] / agg["one"]["rise_mib"]]
    ratios += [analytic[size]["all"] / analytic[size]["one"] for size in ("measured", "vggt_1b")]
    lines.append("| all / one | " + " | ".join(f"{r:.2f}x" for r in ratios) + " |")
    lines += [
        "",
        f"Engine start {eng['one']['engine_start_s']:.1f} s / {eng['all']['engine_start_s']:.1f} s, request latency "
        f"{eng['one']['latency_s']:.2f} s / {eng['all']['latency_s']:.2f} s (one / all). VGGT-1B: 24 layers, "
        "2C = 2048, bf16, 16 frames of 476x644 (34x46 patches + 5 special tokens).",
    ]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.engine_footprint", description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--height", type=int, default=252)
    parser.add_argument("--width", type=int, default=336)
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument("--spatial-depth", type=int, help="write the tiny checkpoint with this aggregator depth")
    parser.add_argument("--json", type=Path, help="also write the result here")
    parser.add_argument("--variant", choices=VARIANTS, help=argparse.SUPPRESS)  # one run, in this process
    parser.add_argument("--part", choices=("engine", "aggregator"), default="engine", help=argparse.SUPPRESS)
    parser.add_argument("--checkpoint", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.variant is not None:
        run = run_engine if args.part == "engine" else run_aggregator
        single = run(args.checkpoint, args.variant, args.frames, args.height, args.width)
        if args.json:
            args.json.write_text(json.dumps(single, indent=1))
        print(json.dumps(single))
        return
    result = measure(args.frames, args.height, args.width, args.reps, args.spatial_depth)
    print(to_markdown(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()

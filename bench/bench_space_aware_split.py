"""Benchmark: where one space-aware request's time goes, stage by stage (tiny checkpoint, CPU, in process).

The stages are the server's (``server.frames.video_prep`` through ``sampling.space_aware``), run here one after the
other on one synthetic 640x480 H.264 video held in memory:

1. candidate decode: open the bytes with decord and decode the ``--candidates`` uniformly spaced candidates;
2. VGGT preprocessing: the original's resize to width 518 (PIL bicubic), height a multiple of 14;
3. VGGT: aggregator plus point head on the candidates (the tiny random-weight checkpoint's VGGT, float32);
4. selection: the greedy voxel cover keeping ``k`` frames (``sampling.voxel_cover``);
5. chosen frames: decode the ``k`` chosen frames and resize them by qwen-vl-utils' rules for the model.

The tiny VGGT is 64 wide and 2 blocks deep, so on this page VGGT's share is far below its real one; the
analytic FLOPs of VGGT-1B's aggregator on the same candidates are printed beside it (and ``bench/gpu/run.sh``
times the real size). Default 32 candidates, not the original's 128: the tiny model's global attention over
all candidates' tokens is quadratic, and at 128 one CPU pass takes minutes.

    python -m bench.bench_space_aware_split [--candidates 32] [--k 16] [--reps 5] [--seconds 10] [--json PATH]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from bench.bench_decode import make_video
from bench.gpu_spatial_encoder import FULL, Case, aggregator_flops
from bench.protocol import Protocol, notes, spread
from bench.results import emit
from sampling.decode import open_video
from sampling.geometry import GeometryNetwork, candidate_indices, preprocess_frames, vggt_input_size
from sampling.space_aware import select_frames
from sampling.uniform import UniformSpec, resize_frames, resized_size

STAGES = ("candidate decode", "VGGT preprocessing", "VGGT (tiny)", "selection", "chosen frames decode + resize")


def one_request(data: bytes, network: GeometryNetwork, candidates: int, k: int) -> tuple[dict[str, float], list[int]]:
    """Seconds per stage of one space-aware request, and the chosen video frames."""
    seconds: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(stage: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        seconds[stage] = now - clock
        clock = now

    with open_video(data) as video:
        info = video.info
        candidate = [int(i) for i in candidate_indices(info.num_frames, candidates)]
        frames = video.frames(candidate)
        lap(STAGES[0])
        images = preprocess_frames(frames)
        lap(STAGES[1])
        points, conf = network.world_points(images, frames_chunk_size=8)
        lap(STAGES[2])
        chosen = [candidate[i] for i in select_frames(points, conf, min(k, len(candidate)))]
        lap(STAGES[3])
        size = resized_size(len(chosen), info.height, info.width, UniformSpec(nframes=k))
        resize_frames(video.frames(chosen), size)
        lap(STAGES[4])
    return seconds, chosen


def measure(candidates: int = 32, k: int = 16, reps: int = 5, seconds: float = 10.0) -> dict[str, Any]:
    """One warm-up request, then ``reps`` requests; per-stage samples and medians."""
    from model_plugin.tiny import write_tiny_checkpoint

    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = write_tiny_checkpoint(Path(tmp) / "tiny", seed=0)
        network = GeometryNetwork.load(checkpoint)
        data = make_video(Path(tmp) / "v.mp4", seconds, 30, 640, 480).read_bytes()
    one_request(data, network, candidates, k)  # warm-up, not counted
    protocol = Protocol()
    samples: dict[str, list[float]] = {stage: [] for stage in STAGES}
    for rep in range(reps):  # one path only: nothing to shuffle; each request calibrated (bench.protocol)
        split, chosen = protocol.run_pass(f"request {rep}", lambda: one_request(data, network, candidates, k))
        for stage, value in split.items():
            samples[stage].append(value)
    height = vggt_input_size(480, 640)[0]
    vggt_case = Case(candidates, height, 518)
    meta = {
        "candidates": candidates,
        "k": k,
        "reps": reps,
        "protocol": protocol.meta(),
        "video": f"640x480 H.264, {seconds:g} s at 30 fps",
        "vggt_input": f"{height}x518",
        "chosen": chosen,
        "torch_threads": torch.get_num_threads(),
        "cpus": len(os.sched_getaffinity(0)),
        "vggt1b_aggregator_tflop": aggregator_flops(vggt_case, FULL) / 1e12,
        "vggt1b_aggregator_tflop_128": aggregator_flops(Case(128, height, 518), FULL) / 1e12,
    }
    return {"meta": meta, "samples_s": samples, "median_s": {s: statistics.median(v) for s, v in samples.items()}}


def to_markdown(result: dict[str, Any]) -> str:
    meta, median, samples = result["meta"], result["median_s"], result["samples_s"]
    total = sum(median.values())
    lines = [
        f"One space-aware request on a {meta['video']} video in memory: {meta['candidates']} candidates at "
        f"{meta['vggt_input']}, k = {meta['k']}; tiny random-weight VGGT, float32, CPU ({meta['cpus']} CPUs, torch "
        f"threads {meta['torch_threads']}); median (min–max) of {meta['reps']} requests after a warm-up.",
        "",
        "| stage | median ms (min–max) | share of the sum of medians |",
        "| --- | ---: | ---: |",
    ]
    for stage in STAGES:
        lines.append(f"| {stage} | {spread(samples[stage], '.1f', scale=1e3)} | {100 * median[stage] / total:.0f}% |")
    lines += [
        f"| sum of medians | {total * 1e3:.1f} | |",
        "",
        f"VGGT-1B's aggregator on the same input (analytic, heads excluded): {meta['vggt1b_aggregator_tflop']:.0f} "
        f"TFLOP for {meta['candidates']} candidates, {meta['vggt1b_aggregator_tflop_128']:.0f} TFLOP for the "
        "original's 128: at real size VGGT dominates the request; the tiny model's share above does not transfer.",
    ]
    return "\n".join(lines) + "\n" + ("\n" + notes(meta) + "\n" if notes(meta) else "")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.bench_space_aware_split", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--candidates", type=int, default=32)
    parser.add_argument("--k", type=int, default=16)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=10.0, help="length of the synthetic video")
    parser.add_argument("--json", type=Path, help="also write the result here")
    args = parser.parse_args(argv)
    result = measure(args.candidates, args.k, args.reps, args.seconds)
    emit(result, to_markdown, args.json)


if __name__ == "__main__":
    main()

"""Offline pre-sampling: frame folders for evaluations that read frames from disk, in the seed's layout.

``python -m sampling presample VIDEO_DIR OUT_DIR --strategy space_aware --num-frames 16 --weights CKPT`` writes,
for every ``*.mp4`` in ``VIDEO_DIR``, ``OUT_DIR/sa_sampling/<video>/<video>_frame_<index:06d>.png`` (or
``uniform_sampling/`` for ``--strategy uniform``): the decoded frames at full resolution, named by their index
in the video, exactly as the seed's ``sa_sampling.py`` lays them out. As there, both strategies draw from the
same candidates (``min(128, frames)`` evenly spaced frames): uniform keeps ``linspace(0, candidates - 1, k)``
of them, space-aware keeps the greedy voxel cover. Frames are decoded once, in memory (no PNG round trip), and
a video that fails is reported and skipped instead of ending the run.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image
from tqdm import tqdm

from sampling.decode import open_video
from sampling.errors import VideoError
from sampling.geometry import GeometryNetwork, candidate_indices
from sampling.limits import DecodeLimits
from sampling.space_aware import space_aware_indices

Strategy = Literal["uniform", "space_aware"]
STRATEGY_DIRS = {"uniform": "uniform_sampling", "space_aware": "sa_sampling"}


def seed_uniform_indices(num_video_frames: int, k: int, max_candidates: int = 128) -> list[int]:
    """The seed script's uniform frames: ``k`` evenly spaced candidates (all of them when there are few)."""
    candidates = candidate_indices(num_video_frames, max_candidates)
    if len(candidates) <= k:
        return [int(i) for i in candidates]
    return [int(candidates[i]) for i in np.linspace(0, len(candidates) - 1, num=k, dtype=int)]


def presample_video(
    video_path: Path,
    out_dir: Path,
    strategy: Strategy,
    num_frames: int,
    network: GeometryNetwork | None,
    limits: DecodeLimits,
) -> list[Path]:
    """Write one video's chosen frames; returns the PNG paths."""
    with open_video(video_path, limits) as video:
        total = video.info.num_frames
        if strategy == "space_aware":
            assert network is not None
            indices = space_aware_indices(video, total, num_frames, network)
        else:
            indices = seed_uniform_indices(total, num_frames)
        frames = video.frames(indices)
    target = out_dir / STRATEGY_DIRS[strategy] / video_path.stem
    target.mkdir(parents=True, exist_ok=True)
    written = []
    for index, frame in zip(indices, frames, strict=True):
        path = target / f"{video_path.stem}_frame_{index:06d}.png"
        Image.fromarray(frame).save(path)
        written.append(path)
    return written


def presample(
    video_dir: Path,
    out_dir: Path,
    strategy: Strategy,
    num_frames: int,
    weights: Path | None = None,
    device: str = "auto",
) -> tuple[int, list[tuple[Path, str]]]:
    """Pre-sample every ``*.mp4`` of ``video_dir``; returns (videos done, [(video, why it failed)])."""
    import torch

    videos = sorted(video_dir.glob("*.mp4"))
    network = None
    if strategy == "space_aware":
        if weights is None:
            raise ValueError("space-aware sampling needs --weights (a Spatial-MLLM checkpoint or a VGGT file)")
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
        network = GeometryNetwork.load(weights, device=device, dtype=dtype)
    limits = DecodeLimits(max_decoded_pixels=1 << 40, max_duration_s=24 * 3600.0)
    failures: list[tuple[Path, str]] = []
    for video in tqdm(videos, desc=f"{strategy} sampling", unit="video"):
        try:
            presample_video(video, out_dir, strategy, num_frames, network, limits)
        except VideoError as exc:
            failures.append((video, str(exc)))
    return len(videos) - len(failures), failures


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sampling", description="Offline frame sampling.")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("presample", help="write sampled frames of every *.mp4 in a folder as PNGs")
    run.add_argument("video_dir", type=Path)
    run.add_argument("out_dir", type=Path)
    run.add_argument("--strategy", choices=sorted(STRATEGY_DIRS), default="space_aware")
    run.add_argument("--num-frames", type=int, default=16)
    run.add_argument("--weights", type=Path, help="Spatial-MLLM checkpoint dir or VGGT safetensors (space_aware)")
    run.add_argument("--device", default="auto", help="auto, cpu or cuda[:N]")
    args = parser.parse_args(argv)
    if not args.video_dir.is_dir():
        parser.error(f"{args.video_dir} is not a directory")
    done, failures = presample(args.video_dir, args.out_dir, args.strategy, args.num_frames, args.weights, args.device)
    for video, why in failures:
        print(f"skipped {video.name}: {why}", file=sys.stderr)
    print(f"{done} video(s) written under {args.out_dir / STRATEGY_DIRS[args.strategy]}")
    return 1 if failures else 0

"""Offline pre-sampling: frame folders for evaluations that read frames from disk, in the seed's layout.

``python -m sampling presample VIDEO_DIR OUT_DIR --strategy space_aware --num-frames 16 --weights CKPT`` writes,
for every video in ``VIDEO_DIR`` (``.mp4``, ``.mov``, ``.mkv``, ``.webm``, ``.avi``..., any case),
``OUT_DIR/sa_sampling/<video>/<video>_frame_<index:06d>.png`` (or
``uniform_sampling/`` for ``--strategy uniform``): the decoded frames at full resolution, named by their index
in the video, exactly as the seed's ``sa_sampling.py`` lays them out. As there, both strategies draw from the
same candidates (``min(128, frames)`` evenly spaced frames): uniform keeps ``linspace(0, candidates - 1, k)``
of them, truncated to int as that script does (not rounded as qwen-vl-utils and the server's uniform sampling do:
:data:`UNIFORM_DIFFERS`), space-aware keeps the greedy voxel cover. Frames are decoded once, in memory (no PNG
round trip); a video that fails is reported and skipped instead of ending the run, other files are listed as
skipped, and a video with fewer frames than asked is written with what it has and a warning. The default strategy
is ``uniform``; ``space_aware`` needs ``--weights``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image
from tqdm import tqdm

from sampling.decode import open_video, silence_decoder_log
from sampling.errors import VideoError
from sampling.geometry import GeometryNetwork, candidate_indices
from sampling.limits import DecodeLimits
from sampling.space_aware import space_aware_indices

Strategy = Literal["uniform", "space_aware"]
STRATEGY_DIRS = {"uniform": "uniform_sampling", "space_aware": "sa_sampling"}
VIDEO_SUFFIXES = {".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".ts", ".flv", ".3gp"}
MIN_FRAMES = 2  # the server rounds frame counts to even and refuses fewer than 2
UNIFORM_DIFFERS = (
    "--strategy uniform follows the original's offline script (src/sampling/sa_sampling.py, its uniform branch: "
    "np.linspace(..., dtype=int) over the candidates, truncated: 0,4,8,13,17,22,26,31 of a 32-frame clip for 8). "
    "The server's uniform sampling of a video file follows qwen-vl-utils' fetch_video, which the original's "
    "evaluation runs on videos (torch.linspace(...).round(): 0,4,9,13,18,22,27,31). Both are faithful, to "
    "different originals; a clip shorter than asked is written whole here (as the script does) but refused by "
    "the server's uniform sampling (as qwen-vl-utils does)."
)


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


@contextlib.contextmanager
def native_stderr_discarded() -> Iterator[None]:
    """Discard what native code writes to file descriptor 2 meanwhile (decord's C++ ``ERROR opening: <path>``
    lines, which no log level silences); every failure still reaches Python as a typed error."""
    sys.stderr.flush()
    saved = os.dup(2)
    with open(os.devnull, "wb") as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


@dataclass
class PresampleReport:
    """What a run did: videos written, videos that failed (and why), files skipped, videos short of frames."""

    written: int = 0
    failed: list[tuple[Path, str]] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    short: list[tuple[Path, int]] = field(default_factory=list)  # (video, frames written)


def presample(
    video_dir: Path,
    out_dir: Path,
    strategy: Strategy,
    num_frames: int,
    weights: Path | None = None,
    device: str = "auto",
) -> PresampleReport:
    """Pre-sample every video of ``video_dir`` (by suffix, any case); other files are reported as skipped."""
    import torch

    entries = sorted(path for path in video_dir.iterdir() if path.is_file())
    videos = [path for path in entries if path.suffix.lower() in VIDEO_SUFFIXES]
    report = PresampleReport(skipped=[path for path in entries if path not in videos])
    network = None
    if strategy == "space_aware":
        if weights is None:
            raise ValueError("space-aware sampling needs --weights (a Spatial-MLLM checkpoint or a VGGT file)")
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
        network = GeometryNetwork.load(weights, device=device, dtype=dtype)
    limits = DecodeLimits(max_decoded_pixels=1 << 40, max_duration_s=24 * 3600.0)
    for video in tqdm(videos, desc=f"{strategy} sampling", unit="video"):
        try:
            with native_stderr_discarded():
                written = presample_video(video, out_dir, strategy, num_frames, network, limits)
        except VideoError as exc:
            report.failed.append((video, str(exc)))
            continue
        report.written += 1
        if len(written) < num_frames:
            report.short.append((video, len(written)))
    return report


def _frame_count(text: str) -> int:
    value = int(text)
    if value < MIN_FRAMES:
        raise argparse.ArgumentTypeError(f"must be at least {MIN_FRAMES} (frame counts are rounded to even)")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sampling", description="Offline frame sampling.")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser(
        "presample",
        help="write sampled frames of every video in a folder as PNGs",
        description="Write sampled frames of every video in a folder as PNGs, as the original's "
        "src/sampling/sa_sampling.py does.",
        epilog=UNIFORM_DIFFERS,
    )
    run.add_argument("video_dir", type=Path)
    run.add_argument("out_dir", type=Path)
    run.add_argument(
        "--strategy",
        choices=sorted(STRATEGY_DIRS),
        default="uniform",
        help="default: uniform (sa_sampling.py's uniform branch: truncated linspace, not the server's rounded "
        "one); space_aware (sa_sampling.py's) needs --weights",
    )
    run.add_argument("--num-frames", type=_frame_count, default=16, help="frames per video, at least 2 (default: 16)")
    run.add_argument("--weights", type=Path, help="Spatial-MLLM checkpoint dir or VGGT safetensors (space_aware)")
    run.add_argument("--device", default="auto", help="auto, cpu or cuda[:N]")
    args = parser.parse_args(argv)
    if not args.video_dir.is_dir():
        parser.error(f"{args.video_dir} is not a directory")
    if args.strategy == "space_aware" and args.weights is None:
        parser.error("--strategy space_aware needs --weights (a Spatial-MLLM checkpoint or a VGGT file)")
    silence_decoder_log()
    report = presample(args.video_dir, args.out_dir, args.strategy, args.num_frames, args.weights, args.device)
    for path in report.skipped:
        print(f"skipped {path.name}: not a video file name ({', '.join(sorted(VIDEO_SUFFIXES))})", file=sys.stderr)
    for video, why in report.failed:
        print(f"skipped {video.name}: {why}", file=sys.stderr)
    for video, count in report.short:
        print(f"warning: {video.name} has only {count} of the {args.num_frames} frames asked", file=sys.stderr)
    print(f"{report.written} video(s) written under {args.out_dir / STRATEGY_DIRS[args.strategy]}")
    return 1 if report.failed else 0

"""Benchmark: frames for a request, our in-memory decord path vs the original's own paths, side by side.

Pairs (each ratio is the original's median over ours on the same frames; the frames are checked equal):

* **uniform path** (what the original's inference and uniform evaluation do per request):
  ``qwen_vl_utils.fetch_video`` with the decord backend on the video file (decode K uniform frames plus its
  resize) vs :func:`sampling.uniform.sample_uniform_from` on the upload's bytes (decord ``get_batch`` in memory
  plus the same resize). Same decoder underneath, so expect ~1x: this row is what a uniform request costs.
* **space-aware evaluation path**: the original's space-aware evaluation reads K frames that an offline script
  wrote as PNGs beforehand; here, K PNG reads (PIL, written outside the timing) vs our decode of the same K
  frames from the bytes.
* **offline sampling, not per request**: the original's sampling script decodes 128 candidates and writes them
  as PNGs once per video, before evaluation; here, decord on the file plus 128 PNG writes vs our decode of the
  same 128 candidates in memory (we never write frames). Labelled so on the page: it is a one-off cost there.
* PyAV on the bytes (sequential decode, ``thread_type = "AUTO"``, rgb24 of the wanted frames only) vs ours, to
  show why decord stays: same libavcodec decoder, about as fast, and decord is what qwen-vl-utils uses.

Timing: one warm-up call per contender, then ``--reps`` rounds running every contender once in a seeded
shuffled order, each round between two calibrations (:mod:`bench.protocol`), so load drift on a shared machine
hits all alike and is caught; medians with min–max, and every raw sample, go to the JSON. The video is
synthetic (moving gradients plus noise, H.264 via PyAV), ``--seconds`` long at ``--fps``, 640x480 by default
(VSI-Bench's usual size).

    python -m bench.bench_decode [--seconds 10] [--fps 30] [--width 640] [--height 480] [--frames 16]
        [--candidates 128] [--reps 5] [--decord-threads N] [--json PATH]
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import av
import decord
import numpy as np
import torch
from PIL import Image

from bench.protocol import Protocol, notes, spread
from bench.results import emit
from bench.timing import time_interleaved
from sampling.decode import decoder_threads, open_video
from sampling.geometry import candidate_indices
from sampling.uniform import UniformSpec, sample_uniform_from, uniform_frame_indices

# (original's side, our side, what the pair measures)
PAIRS = (
    ("qwen_vl_utils", "ours_uniform", "uniform path: K frames decoded and resized per request"),
    ("png_read", "ours_k", "space-aware evaluation path: K chosen frames per request"),
    ("offline_png_write", "ours_candidates", "offline sampling, once per video (not per request): 128 candidates"),
    ("pyav", "ours_k", "decoder choice: PyAV vs decord, K frames from the bytes"),
)
LABELS = {
    "qwen_vl_utils": "original: `qwen_vl_utils.fetch_video` (decord on the file) + its resize",
    "ours_uniform": "ours: `sample_uniform_from` (decord on the bytes) + the same resize",
    "png_read": "original: read K pre-written PNGs (PIL)",
    "ours_k": "ours: decord `get_batch` of the K frames from the bytes",
    "offline_png_write": "original offline script: decord on the file + write 128 PNGs",
    "ours_candidates": "ours: decord `get_batch` of the 128 candidates from the bytes (never written)",
    "pyav": "PyAV on the bytes (sequential, AUTO threads)",
}


def make_video(path: Path, seconds: float, fps: int, width: int, height: int) -> Path:
    """A synthetic H.264 mp4 (x264 defaults): gradients that move, plus mild noise."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:height, 0:width]
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for i in range(round(seconds * fps)):
            base = (x * 0.5 + y * 0.3 + 4 * i) % 256
            noise = rng.integers(-12, 13, (height, width, 3))
            frame = np.stack([base, (base + 80) % 256, (255 - base)], axis=-1) + noise
            image = av.VideoFrame.from_ndarray(np.clip(frame, 0, 255).astype(np.uint8), format="rgb24")
            container.mux(stream.encode(image))
        container.mux(stream.encode())
    return path


def ours(data: bytes, indices: Sequence[int], num_threads: int | None = None) -> np.ndarray:
    with open_video(data, num_threads=num_threads) as video:
        return video.frames(indices)


def write_pngs(frames: np.ndarray, directory: Path) -> list[Path]:
    """Each frame as ``frame_NNNN.png`` (PIL defaults), as an offline sampling script stores them."""
    names = []
    for i, frame in enumerate(frames):
        name = directory / f"frame_{i:04d}.png"
        Image.fromarray(frame).save(name)
        names.append(name)
    return names


def read_pngs(names: Sequence[Path]) -> np.ndarray:
    return np.stack([np.asarray(Image.open(name).convert("RGB")) for name in names])


def offline_png_write(path: Path, indices: Sequence[int]) -> list[Path]:
    """Decode the candidates from the file and write them as PNGs into a fresh temporary directory."""
    frames = decord.VideoReader(str(path)).get_batch(list(indices)).asnumpy()
    with tempfile.TemporaryDirectory() as tmp:
        return write_pngs(frames, Path(tmp))


def qwen_vl_utils_frames(path: Path, frames: int) -> torch.Tensor:
    """The original's uniform path: ``fetch_video`` on the file path, decord backend, ``nframes`` frames."""
    from qwen_vl_utils import vision_process

    vision_process.FORCE_QWENVL_VIDEO_READER = "decord"
    vision_process.get_video_reader_backend.cache_clear()
    return vision_process.fetch_video({"video": str(path), "nframes": frames})


def pyav_frames(data: bytes, indices: Sequence[int]) -> np.ndarray:
    """Decode in order from the bytes, keeping the wanted frames (display order = decord's frame index)."""
    wanted = set(indices)
    kept: dict[int, np.ndarray] = {}
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for i, frame in enumerate(container.decode(stream)):
            if i in wanted:
                kept[i] = frame.to_ndarray(format="rgb24")
            if i >= max(indices):
                break
    return np.stack([kept[i] for i in indices])


def measure(
    seconds: float = 10.0,
    fps: int = 30,
    width: int = 640,
    height: int = 480,
    frames: int = 16,
    reps: int = 5,
    decord_threads: int | None = None,
    candidates: int = 128,
) -> dict[str, Any]:
    """Time every contender on one synthetic video; each pair's frames are checked equal first."""
    with tempfile.TemporaryDirectory() as tmp:
        path = make_video(Path(tmp) / "bench.mp4", seconds, fps, width, height)
        data = path.read_bytes()
        spec = UniformSpec(nframes=frames)
        with open_video(data) as video:
            info = video.info
        indices = uniform_frame_indices(info.num_frames, info.fps, spec)
        candidate = [int(i) for i in candidate_indices(info.num_frames, candidates)]
        reference = ours(data, indices, decord_threads)
        pngs = write_pngs(reference, Path(tmp))
        checks = {
            "png_read_equals_ours": bool(np.array_equal(read_pngs(pngs), reference)),
            "qwen_vl_utils_equals_ours_uniform": bool(
                torch.equal(qwen_vl_utils_frames(path, frames), sample_uniform_from(data, spec).frames)
            ),
            "pyav_max_abs_diff": int(np.abs(pyav_frames(data, indices).astype(np.int16) - reference).max()),
        }
        if not (checks["png_read_equals_ours"] and checks["qwen_vl_utils_equals_ours_uniform"]):
            raise SystemExit(f"the two sides returned different frames: {checks}")
        contenders: dict[str, Callable[[], object]] = {
            "qwen_vl_utils": lambda: qwen_vl_utils_frames(path, frames),
            "ours_uniform": lambda: sample_uniform_from(data, spec),
            "png_read": lambda: read_pngs(pngs),
            "ours_k": lambda: ours(data, indices, decord_threads),
            "offline_png_write": lambda: offline_png_write(path, candidate),
            "ours_candidates": lambda: ours(data, candidate, decord_threads),
            "pyav": lambda: pyav_frames(data, indices),
        }
        protocol = Protocol()
        samples = time_interleaved(contenders, reps, protocol=protocol)
        resized = tuple(sample_uniform_from(data, spec).frames_uint8.shape[-2:])
    medians = {name: statistics.median(times) for name, times in samples.items()}
    meta = {
        "video": {
            "width": info.width,
            "height": info.height,
            "num_frames": info.num_frames,
            "fps": info.fps,
            "duration_s": info.duration_s,
            "bytes": len(data),
            "codec": "h264 (libx264 defaults, yuv420p)",
        },
        "frames": frames,
        "candidates": len(candidate),
        "resized_hw": list(resized),
        "indices": list(indices),
        "reps": reps,
        "warmup": 1,
        "protocol": protocol.meta(),
        "decord_threads_ours": decoder_threads() if decord_threads is None else decord_threads,
        "torch_threads": torch.get_num_threads(),
        "versions": {"decord": decord.__version__, "av": av.__version__},
        "cpu_count": os.cpu_count(),
    }
    ratios = {f"{slow}/{fast}": medians[slow] / medians[fast] for slow, fast, _ in PAIRS}
    return {"meta": meta, "checks": checks, "samples_s": samples, "median_s": medians, "ratios": ratios}


def to_markdown(result: dict[str, Any]) -> str:
    meta, median, samples = result["meta"], result["median_s"], result["samples_s"]
    video = meta["video"]
    lines = [
        f"K = {meta['frames']} uniform frames (resized to {meta['resized_hw'][1]}x{meta['resized_hw'][0]} where the "
        f"row says so) and {meta['candidates']} candidates from a {video['width']}x{video['height']} H.264 mp4, "
        f"{video['num_frames']} frames at {video['fps']:g} fps, {video['bytes'] / 2**20:.2f} MiB; median of "
        f"{meta['reps']} interleaved runs (order shuffled per run, seeded) after one warm-up, min–max in brackets; "
        f"{meta['cpu_count']} CPUs, decord threads for ours {meta['decord_threads_ours'] or 'ffmpeg default'}, "
        f"torch threads {meta['torch_threads']}.",
        "Checked before timing: qwen-vl-utils' frames equal ours exactly, the PNGs read back equal our decode, "
        f"PyAV's max abs pixel difference from ours is {result['checks']['pyav_max_abs_diff']}.",
        "",
        "| what | original's side | ms | our side | ms | original / ours (medians) |",
        "| --- | --- | ---: | --- | ---: | ---: |",
    ]
    for slow, fast, what in PAIRS:
        lines.append(
            f"| {what} | {LABELS[slow]} | {spread(samples[slow], '.1f', scale=1e3)} | {LABELS[fast]} | "
            f"{spread(samples[fast], '.1f', scale=1e3)} "
            f"| {median[slow] / median[fast]:.2f}x |"
        )
    return "\n".join(lines) + "\n" + ("\n" + notes(meta) + "\n" if notes(meta) else "")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--fps", type=int, default=30)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--candidates", type=int, default=128)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument(
        "--decord-threads",
        type=int,
        default=None,
        help="decord num_threads for ours (default: sampling's; 0: ffmpeg's)",
    )
    parser.add_argument("--json", type=Path, help="also write the result here")
    args = parser.parse_args(argv)
    result = measure(
        args.seconds,
        args.fps,
        args.width,
        args.height,
        args.frames,
        args.reps,
        decord_threads=args.decord_threads,
        candidates=args.candidates,
    )
    emit(result, to_markdown, args.json)


if __name__ == "__main__":
    main()

"""Benchmark: 16 uniform frames from an upload, our way vs the seed's PNG round trip, side by side in one run.

* ``ours``: :func:`sampling.decode.open_video` on the upload's bytes, then ``frames(indices)`` (decord
  ``get_batch`` of just those frames), in memory.
* ``seed``: decord on the file path, ``get_batch`` of the same frames, each frame saved as a PNG into a temporary
  directory and read back with PIL. (The seed is given the file for free; a server would first have to write
  the upload to disk, so the ratio flatters the seed.)
* ``ours + resize``: the whole :func:`sampling.uniform.sample_uniform_from` (decode plus qwen-vl-utils' resize),
  for scale.

The video is synthetic (moving gradients plus noise, H.264 via PyAV), ``--seconds`` long at ``--fps``. Both
paths must return identical frames; the run checks it before timing.

    python -m bench.bench_decode [--seconds 10] [--fps 30] [--width 640] [--height 480] [--frames 16] [--reps 7]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import decord
import numpy as np
from PIL import Image

from sampling.decode import open_video
from sampling.uniform import UniformSpec, sample_uniform_from, uniform_frame_indices


def make_video(path: Path, seconds: float, fps: int, width: int, height: int) -> Path:
    """A synthetic H.264 mp4 (PyAV, from the test dependencies): gradients that move, plus mild noise."""
    import av

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
            for packet in stream.encode(image):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def ours(data: bytes, indices: list[int]) -> np.ndarray:
    with open_video(data) as video:
        return video.frames(indices)


def seed_round_trip(path: Path, indices: list[int]) -> np.ndarray:
    frames = decord.VideoReader(str(path)).get_batch(indices).asnumpy()
    with tempfile.TemporaryDirectory() as tmp:
        names = []
        for i, frame in enumerate(frames):
            name = Path(tmp) / f"frame_{i:04d}.png"
            Image.fromarray(frame).save(name)
            names.append(name)
        return np.stack([np.asarray(Image.open(name).convert("RGB")) for name in names])


def timed(fn: Callable[[], object], reps: int) -> list[float]:
    fn()  # warm-up: imports, decoder libraries, page cache
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--fps", type=int, default=30)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--reps", type=int, default=7)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        path = make_video(Path(tmp) / "bench.mp4", args.seconds, args.fps, args.width, args.height)
        data = path.read_bytes()
        spec = UniformSpec(nframes=args.frames)
        with open_video(data) as video:
            info = video.info
        indices = uniform_frame_indices(info.num_frames, info.fps, spec)
        if not np.array_equal(ours(data, indices), seed_round_trip(path, indices)):
            raise SystemExit("the two paths returned different frames")

        rows = {
            "ours (bytes -> frames)": timed(lambda: ours(data, indices), args.reps),
            "seed (decord -> PNG -> PIL)": timed(lambda: seed_round_trip(path, indices), args.reps),
            "ours + resize (sample_uniform_from)": timed(lambda: sample_uniform_from(data, spec), args.reps),
        }

    print(
        f"video: {info.width}x{info.height}, {info.num_frames} frames at {info.fps:g} fps ({info.duration_s:.1f} s), "
        f"{len(data) / 2**20:.2f} MiB; {len(indices)} frames {indices}; median of {args.reps}"
    )
    medians = {name: statistics.median(times) for name, times in rows.items()}
    for name, times in rows.items():
        print(f"  {name:<38} median {medians[name] * 1e3:8.1f} ms   min {min(times) * 1e3:8.1f} ms")
    ratio = medians["seed (decord -> PNG -> PIL)"] / medians["ours (bytes -> frames)"]
    print(f"  seed / ours (decode only): {ratio:.2f}x")


if __name__ == "__main__":
    main()

"""Synthetic test videos for the serving benchmarks: the demo's H.264 room clip, any size and seed."""

from __future__ import annotations

from pathlib import Path

from server.runtime.demo import write_sample_video


def synthetic_mp4(path: Path, frames: int, height: int, width: int, fps: int = 4, seed: int = 0) -> bytes:
    """Write ``frames`` frames of the demo's moving gradient (plus noise) to ``path``; returns the bytes.

    A different ``seed`` gives different pixels of the same size and length, so a benchmark can show every
    request a fresh video (no cache helps) while the token counts stay the same.
    """
    return write_sample_video(path, frames, height, width, fps, seed).read_bytes()

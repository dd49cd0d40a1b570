"""Synthetic test videos for the serving benchmarks: a moving gradient with noise as H.264, any size and seed."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from model_plugin.reference.demo import synthetic_video
from server.runtime.demo import write_mp4


def synthetic_mp4(path: Path, frames: int, height: int, width: int, fps: int = 4, seed: int = 0) -> bytes:
    """Write ``frames`` frames of a moving gradient (plus noise) to ``path``; returns the bytes.

    A different ``seed`` gives different pixels of the same size and length, so a benchmark can show every
    request a fresh video (no cache helps) while the token counts stay the same.
    """
    pixels = synthetic_video(frames, height, width, seed=seed).permute(0, 2, 3, 1).numpy()
    return write_mp4(path, np.ascontiguousarray(pixels), fps).read_bytes()

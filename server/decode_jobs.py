"""What a decoder process runs (:mod:`server.decode_pool`): bytes in, frames out, nothing of the server's state.

This module imports only :mod:`sampling` (no vLLM), so a replacement worker is ready in seconds, and every
argument and result is a plain picklable value.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sampling.decode import VideoInfo, open_video, silence_decoder_log
from sampling.limits import DecodeLimits
from sampling.uniform import UniformSpec, sample_uniform


@dataclass(frozen=True)
class DecodedFrames:
    """Sampled frames ([T, H, W, 3] uint8, NHWC as vLLM takes them), vLLM's video metadata, decode seconds."""

    frames: np.ndarray
    metadata: dict[str, Any]
    decode_s: float


def video_metadata(info: VideoInfo, indices: list[int], range_frames: int) -> dict[str, Any]:
    """What vLLM's Qwen2.5-VL processor reads: sampled fps = len(indices) / total_num_frames * fps, which sets the
    temporal M-RoPE step exactly as the seed's qwen-vl-utils ``video_sample_fps`` does."""
    return {
        "fps": info.fps,
        "duration": info.duration_s,
        "total_num_frames": range_frames,
        "frames_indices": [int(i) for i in indices],
        "video_backend": "decord",
        "do_sample_frames": False,
    }


def decode_uniform(data: bytes, spec: UniformSpec, limits: DecodeLimits) -> DecodedFrames:
    """Uniformly sampled, resized frames of ``data`` (qwen-vl-utils' rules)."""
    started = time.perf_counter()
    with open_video(data, limits) as video:
        sampled = sample_uniform(video, spec)
    frames = np.ascontiguousarray(sampled.frames_uint8.permute(0, 2, 3, 1).numpy())
    metadata = video_metadata(sampled.info, list(sampled.indices), sampled.range_frames)
    return DecodedFrames(frames, metadata, time.perf_counter() - started)


def probe(source: bytes | Path, limits: DecodeLimits) -> VideoInfo:
    """What the video is; the typed video error when ``source`` (bytes or a path) does not decode within
    ``limits``."""
    with open_video(source, limits) as video:
        video.frames([0])
        return video.info


def start_worker() -> None:
    """A decoder process's setup: decord's own log lines off (failures come back as typed errors)."""
    silence_decoder_log()

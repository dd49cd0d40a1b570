"""What a decoder process runs (:mod:`server.frames.decode_pool`): bytes in, frames out, nothing of the server's state.

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
from sampling.time_axis import TimeAxis, video_metadata
from sampling.uniform import UniformSpec, sample_uniform


@dataclass(frozen=True)
class DecodedFrames:
    """Sampled frames ([T, H, W, 3] uint8, NHWC as vLLM takes them), vLLM's video metadata, decode seconds, and
    which frames of the video they are."""

    frames: np.ndarray
    metadata: dict[str, Any]
    decode_s: float
    indices: list[int]  # the decoded frames' indices in the video
    video_fps: float  # the video's own frame rate (the metadata's may be the seed's rule instead)


def decode_uniform(
    data: bytes, spec: UniformSpec, limits: DecodeLimits, time_axis: TimeAxis = "seed_exact"
) -> DecodedFrames:
    """Uniformly sampled, resized frames of ``data`` (qwen-vl-utils' rules), with the metadata that puts them on
    M-RoPE's time axis by ``time_axis`` (:mod:`sampling.time_axis`)."""
    started = time.perf_counter()
    with open_video(data, limits) as video:
        sampled = sample_uniform(video, spec)
    frames = np.ascontiguousarray(sampled.frames_uint8.permute(0, 2, 3, 1).numpy())
    info, indices = sampled.info, list(sampled.indices)
    metadata = video_metadata(indices, info.fps, sampled.range_frames, info.duration_s, time_axis)
    return DecodedFrames(frames, metadata, time.perf_counter() - started, indices, info.fps)


def probe(source: bytes | Path, limits: DecodeLimits) -> VideoInfo:
    """What the video is; the typed video error when ``source`` (bytes or a path) does not decode within
    ``limits``."""
    with open_video(source, limits) as video:
        video.frames([0])
        return video.info


def start_worker() -> None:
    """A decoder process's setup: decord's own log lines off (failures come back as typed errors)."""
    silence_decoder_log()

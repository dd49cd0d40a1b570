"""Test media made at test time (nothing is downloaded): encoded videos and images from synthetic frames."""

from __future__ import annotations

import base64
from pathlib import Path

import av
import numpy as np


def encode_mp4(frames: np.ndarray, path: Path, fps: int = 4, codec: str = "libx264") -> Path:
    """Write [T, H, W, 3] uint8 frames as an H.264 mp4 (even H and W, as yuv420p requires)."""
    _, height, width, _ = frames.shape
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def empty_fragmented_mp4(path: Path) -> bytes:
    """A fragmented mp4 whose video track never got a fragment: a video stream with zero frames."""
    with av.open(str(path), mode="w", options={"movflags": "frag_keyframe+empty_moov"}) as container:
        stream = container.add_stream("libx264", rate=4)
        stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
        container.start_encoding()
    return path.read_bytes()


def audio_only_mp4(path: Path, codec: str = "aac") -> bytes:
    """A container with one audio stream and no video stream."""
    rng = np.random.default_rng(0)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=16000)
        stream.layout = "mono"
        for _ in range(8):
            frame = av.AudioFrame.from_ndarray(rng.standard_normal((1, 1024)).astype(np.float32), "fltp", "mono")
            frame.sample_rate = 16000
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path.read_bytes()


def data_url(path: Path, mime: str = "video/mp4") -> str:
    """``data:`` URL of a file, as OpenAI-style ``video_url`` parts carry it."""
    return f"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode()}"

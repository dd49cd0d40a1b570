"""Against the live server: images as one video, vLLM's ``media_io_kwargs.video`` and ``file://`` URLs.

Which frames the model got is read from two places the server exposes: the prompt token count (a video's tokens
grow by one grid of patches per two frames) and the ``spatial_mllm_video_frames`` histogram.
"""

from __future__ import annotations

import base64
import io
import re
import shutil
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from sampling.uniform import UniformSpec, resized_size

pytestmark = pytest.mark.engine
MODEL = "spatial-mllm-tiny"


def _image(value: int) -> dict:
    out = io.BytesIO()
    Image.fromarray(np.full((112, 140, 3), value, dtype=np.uint8)).save(out, format="PNG")
    return {
        "type": "image_url",
        "image_url": {"url": "data:image/png;base64," + base64.b64encode(out.getvalue()).decode()},
    }


def _chat(live, content: list, **extra) -> httpx.Response:
    body = {"model": MODEL, "max_tokens": 2, "messages": [{"role": "user", "content": content}], **extra}
    return httpx.post(f"{live.base}/v1/chat/completions", json=body, headers=live.headers, timeout=120)


def _frames(live, source: str) -> tuple[int, int]:
    text = httpx.get(f"{live.base}/metrics", timeout=10).text
    found = [
        re.search(rf'^spatial_mllm_video_frames_{name}\{{source="{source}"\}} (\S+)$', text, re.M)
        for name in ("count", "sum")
    ]
    return tuple(int(float(m.group(1))) if m else 0 for m in found)  # type: ignore[return-value]


def test_frames_sent_as_images_are_one_video_of_those_frames(live) -> None:
    tokens = {}
    for count in (2, 4, 8):
        before = _frames(live, "images")
        reply = _chat(live, [{"type": "text", "text": "These are frames of a video."}, *map(_image, range(count))])
        assert reply.status_code == 200, reply.text
        tokens[count] = reply.json()["usage"]["prompt_tokens"]
        after = _frames(live, "images")
        assert (after[0] - before[0], after[1] - before[1]) == (1, count)
    height, width = resized_size(8, 112, 140, UniformSpec(min_pixels=3136, max_pixels=12544))
    per_two_frames = (height // 28) * (width // 28)
    assert tokens[4] - tokens[2] == per_two_frames and tokens[8] - tokens[2] == 3 * per_two_frames


def test_images_stay_images_on_request(live) -> None:
    reply = _chat(live, [_image(1), _image(2)], images_as_video=False)
    assert reply.status_code == 400 and "image(s)" in reply.json()["error"]["message"]


def test_vllm_num_frames_option_sets_the_frame_count(live, room_video: Path) -> None:
    url = "data:video/mp4;base64," + base64.b64encode(room_video.read_bytes()).decode()
    before = _frames(live, "video")
    reply = _chat(
        live, [{"type": "video_url", "video_url": {"url": url}}], media_io_kwargs={"video": {"num_frames": 4}}
    )
    assert reply.status_code == 200, reply.text
    after = _frames(live, "video")
    assert (after[0] - before[0], after[1] - before[1]) == (1, 4)
    reply = _chat(live, [{"type": "video_url", "video_url": {"url": url}}], media_io_kwargs={"video": {"backend": "x"}})
    assert reply.status_code == 400 and reply.json()["error"]["param"] == "media_io_kwargs.video.backend"


def test_file_urls_under_the_allowed_folder_only(live, room_video: Path, tmp_path: Path) -> None:
    inside = live.media_root / "room-file-url.mp4"
    shutil.copy(room_video, inside)
    reply = _chat(live, [{"type": "video_url", "video_url": {"url": f"file://{inside}"}}])
    assert reply.status_code == 200, reply.text
    outside = tmp_path / "room.mp4"
    shutil.copy(room_video, outside)
    reply = _chat(live, [{"type": "video_url", "video_url": {"url": f"file://{outside}"}}])
    assert reply.status_code == 400 and "--allowed-local-media-path" in reply.json()["error"]["message"]

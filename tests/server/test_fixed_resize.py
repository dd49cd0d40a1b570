"""``video_sampling.resized_height``/``resized_width`` without an engine: the seed's fixed frame size (ScanQA asks
for 480x640) turned into a sampling spec within the server's caps, rounded as qwen-vl-utils rounds it, and kept
apart from other sizes in the sampling cache."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from media import encode_mp4
from qwen_vl_utils.vision_process import smart_resize as qwen_smart_resize

from sampling.cache import content_hash
from server.api.protocol import VideoSampling
from server.errors import APIError
from server.frames.video_prep import VideoPreparer
from server.media.resolve import MediaResolver
from server.runtime.settings import ServerSettings

SETTINGS = ServerSettings(max_pixels_per_frame=12544, min_pixels_per_frame=3136, max_num_frames=16)


def _resolver() -> MediaResolver:
    return MediaResolver(SETTINGS, files=None, preparer=None, http=None, prepared=None)  # type: ignore[arg-type]  # specs only


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    frames = np.random.default_rng(1).integers(0, 255, (12, 64, 96, 3), dtype=np.uint8)
    return encode_mp4(frames, tmp_path_factory.mktemp("v") / "v.mp4", fps=4).read_bytes()


def test_fixed_size_reaches_the_spec_and_its_cache_key() -> None:
    fixed = _resolver().sampling_spec(VideoSampling(num_frames=4, resized_height=60, resized_width=150))
    budget = _resolver().sampling_spec(VideoSampling(num_frames=4))
    other = _resolver().sampling_spec(VideoSampling(num_frames=4, resized_height=56, resized_width=140))
    assert (fixed.resized_height, fixed.resized_width) == (60, 150)
    assert (fixed.uniform().resized_height, fixed.uniform().resized_width) == (60, 150)
    assert len({fixed.cache_key(), budget.cache_key(), other.cache_key()}) == 3


@pytest.mark.parametrize(
    ("sampling", "param"),
    [
        ({"resized_height": 480, "resized_width": 640}, "video_sampling.resized_width"),  # 476x644 > 12544
        ({"resized_height": 640, "resized_width": 480}, "video_sampling.resized_height"),
        ({"resized_height": 56}, "video_sampling.resized_width"),
        ({"resized_width": 56}, "video_sampling.resized_height"),
        ({"resized_height": 56, "resized_width": 56, "max_pixels": 3136}, "video_sampling.max_pixels"),
        ({"resized_height": 28, "resized_width": 28 * 250}, "video_sampling.resized_height"),  # ratio over 200:1
    ],
)
def test_bad_fixed_sizes_are_refused_naming_the_field(sampling: dict, param: str) -> None:
    with pytest.raises(APIError) as caught:
        _resolver().sampling_spec(VideoSampling.model_construct(num_frames=4, **sampling))  # past the schema
    assert caught.value.status == 400
    assert caught.value.param == param


def test_frames_come_out_at_the_size_qwen_vl_utils_rounds_to(video: bytes) -> None:
    preparer = VideoPreparer(SETTINGS)
    spec = _resolver().sampling_spec(VideoSampling(num_frames=4, resized_height=60, resized_width=150))
    prepared = asyncio.run(preparer.prepare(video, content_hash(video), spec, "v"))
    preparer.shutdown()
    height, width = qwen_smart_resize(60, 150, factor=28)
    assert prepared.frames.shape == (4, height, width, 3) == (4, 56, 140, 3)

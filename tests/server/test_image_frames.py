"""Frame lists, vLLM's media options and the local-file / domain allow-lists, without an engine."""

from __future__ import annotations

import base64
import io
from argparse import Namespace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from server.api.protocol import SpatialChatCompletionRequest, VideoSampling
from server.errors import APIError
from server.frames.video_prep import SamplingSpec
from server.media.image_frames import FRAME_LIST_FPS, frames_video, merge_frame_lists
from server.media.media_access import MediaAccess
from server.media.vllm_media_options import apply_vllm_media_options


def _png(value: int, height: int = 64, width: int = 96) -> bytes:
    out = io.BytesIO()
    Image.fromarray(np.full((height, width, 3), value, dtype=np.uint8)).save(out, format="PNG")
    return out.getvalue()


def _image_part(value: int) -> dict:
    return {
        "type": "image_url",
        "image_url": {"url": "data:image/png;base64," + base64.b64encode(_png(value)).decode()},
    }


def _spec(max_frames: int = 16) -> SamplingSpec:
    return SamplingSpec("uniform", 8, None, max_frames, 3136, 12544, 10**8)


def test_two_or_more_images_without_video_become_one_video_part_in_place() -> None:
    text = {"type": "text", "text": "These are frames of a video."}
    frames = [_image_part(v) for v in (10, 20, 30)]
    messages = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": [text, *frames, {"type": "text", "text": "question"}]},
        {"role": "user", "content": [_image_part(1)]},  # one image stays an image
        {"role": "user", "content": [_image_part(1), _image_part(2), {"type": "video_url", "video_url": "x"}]},
    ]
    found = merge_frame_lists(messages)
    assert len(found) == 1
    content = messages[1]["content"]
    assert [part["type"] for part in content] == ["text", "video_url", "text"]
    assert content[1] is found[0].part
    assert found[0].urls == [part["image_url"]["url"] for part in frames]
    assert found[0].params == ["messages[1].content[1]", "messages[1].content[2]", "messages[1].content[3]"]
    assert len(messages[2]["content"]) == 1 and len(messages[3]["content"]) == 3


def test_frame_list_video_keeps_order_pads_to_even_and_has_the_frame_list_timing() -> None:
    video = frames_video([_png(v) for v in (10, 20, 30)], ["a", "b", "c"], _spec())
    assert video.frames.shape == (4, 56, 84, 3) and video.frames.dtype == np.uint8
    assert [int(frame.mean()) for frame in video.frames] == [10, 20, 30, 30]
    assert video.metadata["fps"] == FRAME_LIST_FPS and video.metadata["total_num_frames"] == 4
    assert video.metadata["frames_indices"] == [0, 1, 2, 3] and video.metadata["do_sample_frames"] is False


def test_frame_list_past_the_frame_cap_is_thinned_evenly_in_order() -> None:
    values = list(range(10, 130, 10))  # 12 frames, cap 4
    video = frames_video([_png(v) for v in values], [str(v) for v in values], _spec(max_frames=4))
    assert [int(frame.mean()) for frame in video.frames] == [10, 50, 80, 120]


def test_frames_of_other_sizes_are_resized_to_the_first_frames_size() -> None:
    video = frames_video([_png(10), _png(20, 128, 192)], ["a", "b"], _spec())
    assert video.frames.shape == (2, 56, 84, 3)


def test_an_undecodable_image_is_a_400_naming_its_part() -> None:
    with pytest.raises(APIError) as caught:
        frames_video([_png(10), b"not an image"], ["messages[0].content[0]", "messages[0].content[1]"], _spec())
    assert caught.value.status == 400 and caught.value.param == "messages[0].content[1]"


def _request(**fields) -> SpatialChatCompletionRequest:
    return SpatialChatCompletionRequest(model="m", messages=[{"role": "user", "content": "hi"}], **fields)


def test_vllm_video_options_become_video_sampling() -> None:
    request = _request(media_io_kwargs={"video": {"num_frames": 10}}, video_sampling={"strategy": "space_aware"})
    apply_vllm_media_options(request)
    assert request.video_sampling == VideoSampling(strategy="space_aware", num_frames=10)
    assert request.media_io_kwargs is None and request.mm_processor_kwargs is None
    request = _request(media_io_kwargs={"video": {"fps": 1.5}})
    apply_vllm_media_options(request)
    assert request.video_sampling == VideoSampling(fps=1.5)


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"media_io_kwargs": {"video": {"num_frames": 8, "backend": "x"}}}, "media_io_kwargs.video.backend"),
        ({"media_io_kwargs": {"image": {"size": 3}}}, "media_io_kwargs.image"),
        ({"media_io_kwargs": {"video": {"num_frames": 0}}}, "media_io_kwargs.video.num_frames"),
        (
            {"media_io_kwargs": {"video": {"num_frames": 4}}, "video_sampling": {"num_frames": 8}},
            "media_io_kwargs.video.num_frames",
        ),
        ({"mm_processor_kwargs": {"max_pixels": 10**7}}, "mm_processor_kwargs.max_pixels"),
    ],
)
def test_any_other_media_option_is_a_400_naming_it(fields: dict, param: str) -> None:
    with pytest.raises(APIError) as caught:
        apply_vllm_media_options(_request(**fields))
    assert caught.value.status == 400 and caught.value.param == param


def test_file_urls_need_the_flag_and_stay_under_the_allowed_folder(tmp_path: Path) -> None:
    allowed = tmp_path / "media"
    (allowed / "sub").mkdir(parents=True)
    (allowed / "sub" / "v.mp4").write_bytes(b"video")
    (tmp_path / "secret.mp4").write_bytes(b"secret")
    with pytest.raises(APIError, match="--allowed-local-media-path"):
        MediaAccess().read_local(f"file://{allowed}/sub/v.mp4", 100, "p")
    access = MediaAccess.from_args(Namespace(allowed_local_media_path=str(allowed), allowed_media_domains=None))
    assert access.read_local(f"file://{allowed}/sub/v.mp4", 100, "p") == b"video"
    for outside in (f"file://{tmp_path}/secret.mp4", f"file://{allowed}/../secret.mp4"):
        with pytest.raises(APIError, match="--allowed-local-media-path") as caught:
            access.read_local(outside, 100, "p")
        assert caught.value.param == "p" and str(tmp_path) not in caught.value.message
    with pytest.raises(APIError) as caught:
        access.read_local(f"file://{allowed}/sub/v.mp4", 3, "p")
    assert caught.value.status == 413


def test_a_missing_allowed_folder_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="--allowed-local-media-path"):
        MediaAccess.from_args(Namespace(allowed_local_media_path=str(tmp_path / "nope"), allowed_media_domains=None))


def test_media_domains_restrict_http_hosts() -> None:
    MediaAccess().check_domain("https://anywhere.example/v.mp4", "p")
    access = MediaAccess(domains=("media.example",))
    access.check_domain("https://media.example/v.mp4", "p")
    with pytest.raises(APIError, match="--allowed-media-domains"):
        access.check_domain("https://other.example/v.mp4", "p")

"""Regression tests for vLLM's CVE-2026-34755 / GHSA-pq5c-rjhq-qp7p (unbounded ``data:video/jpeg;base64,``
frame lists, fixed upstream in 0.19.0) and for per-request frame counts below one.

A frame list is refused from its header: a 5000-frame one gets a 400 naming its field without a frame decoded
(memory measured with tracemalloc against what decoding the frames would take). The live server's cases are in
test_bad_input.py.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import tracemalloc

import httpx
import pytest
from PIL import Image
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

from server.api.protocol import SpatialChatCompletionRequest
from server.errors import APIError
from server.media.inline_media import InlineMedia
from server.media.resolve import inline_video_bytes
from server.media.vllm_media_options import apply_vllm_media_options

FRAMES = 5000
SIDE = 128
PARAM = "messages[0].content[0].video_url"


def _jpeg_frame() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (SIDE, SIDE), (90, 120, 200)).save(out, format="JPEG")
    return out.getvalue()


def frame_list_url(frames: int) -> str:
    """vLLM's format: one ``data:video/jpeg;base64,`` header, then base64 JPEG frames separated by commas."""
    frame = base64.b64encode(_jpeg_frame()).decode()
    return "data:video/jpeg;base64," + ",".join([frame] * frames)


async def _route_never_reached(_) -> JSONResponse:
    raise AssertionError("the frame list reached the route")


def test_a_5000_frame_list_is_refused_naming_its_field_without_decoding_a_frame() -> None:
    body = json.dumps(
        {
            "model": "m",
            "messages": [
                {"role": "user", "content": [{"type": "video_url", "video_url": {"url": frame_list_url(FRAMES)}}]}
            ],
        }
    ).encode()
    app = Starlette(routes=[Route("/v1/chat/completions", _route_never_reached, methods=["POST"])])
    app.add_middleware(InlineMedia, max_video_bytes=64 << 20)

    async def send() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
            return await client.post("/v1/chat/completions", content=body, headers={"content-type": "application/json"})

    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        reply = asyncio.run(send())
        after, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert reply.status_code == 400, reply.text
    error = reply.json()["error"]
    assert error["param"] == PARAM and "image_url parts" in error["message"]
    decoded_frames = FRAMES * SIDE * SIDE * 3  # what holding the frames as pixels would take
    assert peak - before < 4 * len(body) < decoded_frames / 8  # the body's copies only, never the frames
    assert after - before < 1 << 20  # nothing kept


@pytest.mark.parametrize("url", [frame_list_url(3), frame_list_url(3).replace("video/jpeg", "Video/JPEG ; x=1")])
def test_a_short_frame_list_says_what_to_send_instead(url: str) -> None:
    with pytest.raises(APIError) as refused:
        inline_video_bytes(url, 1 << 20, PARAM)
    assert (refused.value.status, refused.value.param) == (400, PARAM)
    assert "data:video/mp4" in refused.value.message and "image_url parts" in refused.value.message


def test_several_payloads_under_another_video_type_get_the_same_advice() -> None:
    url = frame_list_url(3).replace("video/jpeg", "video/mp4")
    with pytest.raises(APIError) as refused:
        inline_video_bytes(memoryview(url.encode()), 1 << 20, PARAM)
    assert refused.value.status == 400 and "invalid" in refused.value.message
    assert "image_url parts" in refused.value.message


@pytest.mark.parametrize("num_frames", [0, -1, -5000])
def test_vllm_frame_counts_below_one_are_refused_naming_the_field(num_frames: int) -> None:
    request = SpatialChatCompletionRequest(
        model="m",
        messages=[{"role": "user", "content": "hi"}],
        media_io_kwargs={"video": {"num_frames": num_frames}},
    )
    with pytest.raises(APIError) as refused:
        apply_vllm_media_options(request)
    assert (refused.value.status, refused.value.param) == (400, "media_io_kwargs.video.num_frames")

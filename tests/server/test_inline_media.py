"""Large JSON chat bodies: parsed off the event loop with their data-URL videos decoded once (the route sees a
small body and the bytes in the request's state), and a JSON cap whose 413 points at /v1/files."""

from __future__ import annotations

import asyncio
import base64
import json

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from server.api.middleware import BodyLimit
from server.media.inline_media import INLINE_PREFIX, InlineMedia, inline_videos

VIDEO = bytes(range(256)) * 8192  # 2 MiB


async def _seen(request: Request) -> JSONResponse:
    """What the route gets: the body's size and video URLs, and the inline videos' sizes."""
    body = await request.body()
    urls = [part[part["type"]]["url"] for part in json.loads(body)["messages"][0]["content"]]
    videos = inline_videos(request.state)
    return JSONResponse(
        {
            "bytes": len(body),
            "urls": [u[:40] for u in urls],
            "inline": {k: len(v) for k, v in videos.items()},
            "same": all(v == VIDEO for v in videos.values()),
        }
    )


def _client(*middleware: tuple[type, dict]) -> httpx.AsyncClient:
    app = Starlette(routes=[Route("/v1/chat/completions", _seen, methods=["POST"])])
    for cls, options in middleware:
        app.add_middleware(cls, **options)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


def _chat(*urls: str) -> dict:
    parts = [{"type": "video_url", "video_url": {"url": url}} for url in urls]
    return {"model": "m", "messages": [{"role": "user", "content": parts}]}


def _data_url(data: bytes, mime: str = "video/mp4") -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def test_a_large_body_reaches_the_route_small_with_its_video_decoded_once() -> None:
    async def scenario() -> dict:
        async with _client((InlineMedia, {"max_video_bytes": 8 << 20})) as client:
            return (await client.post("/v1/chat/completions", json=_chat(_data_url(VIDEO)))).json()

    seen = asyncio.run(scenario())
    (reference,) = seen["inline"]
    assert seen["urls"] == [reference] and reference.startswith(INLINE_PREFIX)
    assert seen["inline"][reference] == len(VIDEO) and seen["same"] and seen["bytes"] < 1000


def test_small_bodies_and_other_data_urls_pass_unchanged() -> None:
    image = _data_url(VIDEO, "image/png")
    escaped = _data_url(VIDEO).replace("/", "\\/")  # a JSON encoder that escapes slashes

    async def scenario() -> list[dict]:
        async with _client((InlineMedia, {"max_video_bytes": 8 << 20})) as client:
            small = await client.post("/v1/chat/completions", json=_chat(_data_url(b"tiny")))
            with_image = _chat(_data_url(VIDEO))
            with_image["messages"][0]["content"].insert(0, {"type": "image_url", "image_url": {"url": image}})
            other = await client.post("/v1/chat/completions", json=with_image)
            body = json.dumps(_chat("x")).replace('"x"', '"' + escaped + '"')
            slashes = await client.post("/v1/chat/completions", content=body)
            return [small.json(), other.json(), slashes.json()]

    small, other, slashes = asyncio.run(scenario())
    assert small["inline"] == {} and small["urls"] == [_data_url(b"tiny")[:40]]
    (reference,) = other["inline"]  # the video is taken out; the image string is put back as it was
    assert other["urls"] == [image[:40], reference] and other["same"]
    assert slashes["inline"] == {} and slashes["bytes"] > len(VIDEO)  # left to the ordinary parser


def test_a_video_data_url_the_route_would_refuse_is_answered_naming_its_field() -> None:
    async def scenario() -> list[httpx.Response]:
        async with _client((InlineMedia, {"max_video_bytes": 8 << 20})) as client:
            wrong_type = await client.post(
                "/v1/chat/completions", json=_chat(_data_url(b"tiny"), _data_url(VIDEO, "text/plain"))
            )
            too_big = await client.post("/v1/chat/completions", json=_chat(_data_url(VIDEO * 5)))
            broken = await client.post("/v1/chat/completions", json=_chat(_data_url(VIDEO)[:-1] + "@"))
            return [wrong_type, too_big, broken]

    answers = asyncio.run(scenario())
    assert [(r.status_code, r.json()["error"]["param"]) for r in answers] == [
        (415, "messages[0].content[1].video_url"),
        (413, "messages[0].content[0].video_url"),
        (400, "messages[0].content[0].video_url"),
    ]
    assert "/v1/files" in answers[1].json()["error"]["message"]


def test_the_json_cap_points_at_the_files_api() -> None:
    async def scenario() -> httpx.Response:
        async with _client((BodyLimit, {"max_bytes": 1 << 30, "json_max_bytes": 1 << 20})) as client:
            return await client.post("/v1/chat/completions", json=_chat(_data_url(VIDEO)))

    response = asyncio.run(scenario())
    assert response.status_code == 413 and "/v1/files" in response.json()["error"]["message"]

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

from server.inline_media import INLINE_PREFIX, InlineMedia, inline_videos
from server.middleware import BodyLimit

VIDEO = bytes(range(256)) * 8192  # 2 MiB


async def _seen(request: Request) -> JSONResponse:
    """What the route gets: the body's size and video URLs, and the inline videos' sizes."""
    body = await request.body()
    urls = [part["video_url"]["url"] for part in json.loads(body)["messages"][0]["content"]]
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


def test_small_bodies_and_refused_data_urls_pass_unchanged() -> None:
    wrong_type = _data_url(VIDEO, "text/plain")

    async def scenario() -> list[dict]:
        async with _client((InlineMedia, {"max_video_bytes": 8 << 20})) as client:
            small = await client.post("/v1/chat/completions", json=_chat(_data_url(b"tiny")))
            refused = await client.post("/v1/chat/completions", json=_chat(wrong_type))
            too_big = await client.post("/v1/chat/completions", json=_chat(_data_url(VIDEO * 5)))
            return [small.json(), refused.json(), too_big.json()]

    small, refused, too_big = asyncio.run(scenario())
    assert small["inline"] == {} and small["urls"] == [_data_url(b"tiny")[:40]]
    assert refused["inline"] == {} and refused["urls"] == [wrong_type[:40]]  # the route names the field, as before
    assert too_big["inline"] == {} and too_big["bytes"] > 10 << 20


def test_the_json_cap_points_at_the_files_api() -> None:
    async def scenario() -> httpx.Response:
        async with _client((BodyLimit, {"max_bytes": 1 << 30, "json_max_bytes": 1 << 20})) as client:
            return await client.post("/v1/chat/completions", json=_chat(_data_url(VIDEO)))

    response = asyncio.run(scenario())
    assert response.status_code == 413 and "/v1/files" in response.json()["error"]["message"]

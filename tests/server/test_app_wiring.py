"""The app factory's wiring without an engine: resources live and die with the app's lifespan, prepared videos
reach vLLM through the connector that vLLM's own registry hands out, and our middleware wraps every answer."""

from __future__ import annotations

import asyncio
import os
from argparse import Namespace
from pathlib import Path

import httpx
import numpy as np
import pytest
import vllm.envs as envs
from fastapi import FastAPI
from vllm.entrypoints.launchers.app import build_app
from vllm.exceptions import VLLMValidationError
from vllm.multimodal.media import MEDIA_CONNECTOR_REGISTRY

from server.errors import install_error_handlers
from server.frames.media_connector import PreparedVideo
from server.runtime.app import add_our_middleware, wire_resources
from server.runtime.cli import build_parser
from server.runtime.launcher import ready_banner
from server.runtime.settings import ServerSettings


def _wired(tmp_path: Path, **settings: object) -> FastAPI:
    app = FastAPI()
    args = Namespace(model=str(tmp_path), served_model_name=None)
    wire_resources(app, args, ServerSettings(uploads_dir=tmp_path / "uploads", **settings))
    return app


def test_prepared_videos_reach_vllms_connector_without_environment(tmp_path: Path) -> None:
    before = os.environ.get("VLLM_MEDIA_CONNECTOR")
    app = _wired(tmp_path)
    assert os.environ.get("VLLM_MEDIA_CONNECTOR") == before  # nothing set behind the user's back
    frames = np.zeros((2, 28, 28, 3), np.uint8)
    url = app.state.prepared_videos.put(PreparedVideo(frames, {"fps": 2.0}, key="k"))
    # the connector exactly as vLLM's chat renderer loads it
    connector = MEDIA_CONNECTOR_REGISTRY.load(envs.VLLM_MEDIA_CONNECTOR, media_io_kwargs=None)
    media = connector.fetch_video(url)
    assert media.media[0] is frames and media.original_bytes == b"k"
    with pytest.raises(VLLMValidationError):
        connector.fetch_video("https://example.com/room.mp4")
    app.state.prepared_videos.release([url])
    with pytest.raises(VLLMValidationError):
        connector.fetch_video(url)


def test_resources_close_with_the_lifespan(tmp_path: Path) -> None:
    app = _wired(tmp_path)

    async def run() -> None:
        async with app.router.lifespan_context(app):
            assert not app.state.http.is_closed
        assert app.state.http.is_closed

    asyncio.run(run())


def test_our_middleware_wraps_every_answer(tmp_path: Path) -> None:
    args = build_parser(environ={}).parse_args(["--model", str(tmp_path)])
    app = build_app(args, ("generate",), None)  # vLLM's app, as build_server_app starts from
    install_error_handlers(app)

    @app.post("/v1/probe")
    async def probe() -> dict[str, str]:
        return {"ok": "yes"}

    add_our_middleware(app, ServerSettings(api_keys=("k",), max_video_bytes=3 << 20))

    async def run() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            key = {"Authorization": "Bearer k"}
            return [
                await client.post("/v1/probe"),  # no key: 401 from APIKeys
                await client.post("/v1/probe", headers=key, content=b"x" * (6 << 20)),  # over the cap
                await client.get("/v1/probe", headers=key),  # wrong method
                await client.post("/v1/probe", headers=key, json={}),
                # vLLM's own route checks the content type before anything needs an engine
                await client.post("/v1/chat/completions", headers=key, content=b"{}"),
            ]

    responses = asyncio.run(run())
    assert [r.status_code for r in responses] == [401, 413, 405, 200, 415], responses[3].text
    # the request id is the outermost layer: even a refused request carries one
    assert all(r.headers.get("x-request-id") for r in responses)
    assert responses[2].json()["error"]["type"] == "MethodNotAllowedError"
    assert responses[4].json()["error"]["type"] == "UnsupportedMediaTypeError"


def test_ready_line_never_prints_a_key_and_fails_clearly_without_one() -> None:
    args = Namespace(served_model_name=["m"], model="ckpt", sample_video=Path("/tmp/room.mp4"))
    line = ready_banner("http://0.0.0.0:8000", args, ServerSettings(api_keys=("secret-key",)))
    assert "secret-key" not in line
    assert '"Authorization: Bearer ${API_KEY:?' in line  # the shell names what to set instead of sending no key
    assert "http://127.0.0.1:8000/v1/video/chat" in line and "video=@/tmp/room.mp4" in line
    assert "Authorization" not in ready_banner("http://0.0.0.0:8000", args, ServerSettings())

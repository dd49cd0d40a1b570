"""One rule for fields nobody defines, on every route: a 400 in OpenAI's shape naming the field's path.

The real routers and error handlers run in process (the refusal happens before any route touches the engine);
the live server's cases are in test_bad_input.py. What OpenAI's schema or vLLM's request model defines stays
accepted: the rule refuses only what neither they nor our extensions know.
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from server.api import chat, files_api, frames_api, oneshot
from server.api.protocol import SpatialChatCompletionRequest
from server.errors import install_error_handlers
from server.runtime.settings import ServerSettings
from server.uploads.file_store import FileStore

MESSAGES = [{"role": "user", "content": "hi"}]


def _post(path: str, method: str = "POST", **kwargs) -> httpx.Response:
    app = FastAPI()
    for module in (chat, files_api, frames_api, oneshot):
        app.include_router(module.router)
    install_error_handlers(app)
    # /v1/files streams its form into the upload store as it arrives (server.uploads.upload_stream): a real one
    with tempfile.TemporaryDirectory() as uploads:
        app.state.files = FileStore(Path(uploads), ttl_s=60, quota_bytes=1 << 30)
        app.state.settings = ServerSettings()
        return _send(app, method, path, **kwargs)


def _send(app: FastAPI, method: str, path: str, **kwargs) -> httpx.Response:

    async def send() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.request(method, path, **kwargs)

    return asyncio.run(send())


def _refused(reply: httpx.Response, param: str) -> str:
    assert reply.status_code == 400, reply.text
    error = reply.json()["error"]
    assert error["param"] == param and error["type"] == "BadRequestError" and error["code"] == 400
    assert error["message"].startswith(f"Unrecognized request argument supplied: {param}.")
    return error["message"]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"video_samplng": {"num_frames": 8}}, "video_samplng"),
        ({"video_sampling": {"num_frame": 8}}, "video_sampling.num_frame"),
        ({"video_sampling": {"strategy": "uniform", "frames": 4}, "max_tokens": 4}, "video_sampling.frames"),
    ],
)
def test_chat_completions_refuse_an_unknown_field_by_its_path(body: dict, param: str) -> None:
    _refused(_post("/v1/chat/completions", json={"model": "m", "messages": MESSAGES, **body}), param)


def test_an_unknown_field_is_named_before_other_schema_errors() -> None:
    reply = _post("/v1/chat/completions", json={"model": "m", "messages": MESSAGES, "max_tokns": 4, "n": "many"})
    _refused(reply, "max_tokns")


def test_removed_guided_fields_say_what_replaced_them() -> None:
    reply = _post("/v1/chat/completions", json={"model": "m", "messages": MESSAGES, "guided_json": {}})
    assert "structured_outputs" in _refused(reply, "guided_json")


def test_the_frames_route_refuses_an_unknown_field() -> None:
    _refused(_post("/v1/files/file-x/frames", json={"thumbnail_hight": 64}), "thumbnail_hight")
    _refused(_post("/v1/files/file-x/frames", json={"video_sampling": {"fsp": 1}}), "video_sampling.fsp")


@pytest.mark.parametrize(
    ("path", "files", "data", "param"),
    [
        ("/v1/files", {"file": ("a.mp4", b"x")}, {"purpose": "user_data", "purpse": "x"}, "purpse"),
        ("/v1/video/chat", {"video": ("a.mp4", b"x")}, {"question": "hi", "num_frame": "4"}, "num_frame"),
    ],
)
def test_form_routes_refuse_an_unknown_field_under_the_same_rule(path: str, files: dict, data: dict, param: str):
    message = _refused(_post(path, files=files, data=data), param)
    assert "This endpoint takes:" in message


def test_fields_of_openai_and_of_vllm_stay_accepted() -> None:
    openai_only = {"store": True, "metadata": {"run": "1"}, "service_tier": "auto", "prompt_cache_key": "k"}
    vllm_extras = {"top_k": 5, "repetition_penalty": 1.1, "chat_template_kwargs": {"x": 1}, "min_tokens": 1}
    ours = {"video_sampling": {"strategy": "space_aware", "num_frames": 8}, "images_as_video": True}
    request = SpatialChatCompletionRequest.model_validate(
        {"model": "m", "messages": MESSAGES, **openai_only, **vllm_extras, **ours}
    )
    assert request.top_k == 5 and request.chat_template_kwargs == {"x": 1}
    assert request.video_sampling is not None and request.video_sampling.num_frames == 8
    assert request.model_extra is None or not (request.model_extra.keys() & openai_only.keys())


@pytest.mark.parametrize(
    ("method", "path", "param"),
    [
        ("GET", "/v1/files?limt=5", "limt"),
        ("GET", "/v1/files/file-x?verbose=1", "verbose"),
        ("POST", "/v1/chat/completions?stream=true", "stream"),
    ],
)
def test_query_parameters_fall_under_the_same_rule(method: str, path: str, param: str) -> None:
    body = {"model": "m", "messages": MESSAGES} if method == "POST" else None
    assert "query parameters" in _refused(_post(path, method, json=body), param)

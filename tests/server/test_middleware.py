"""Our ASGI middleware on a bare Starlette app (no engine): keys, per-key quotas, body caps, admission."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from pydantic import BaseModel
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from server.api.middleware import Admission, APIKeys, BodyLimit, RequestContext


async def _echo(request: Request) -> JSONResponse:
    body = await request.body()
    if request.query_params.get("slow"):
        await asyncio.sleep(0.3)
    return JSONResponse({"bytes": len(body)})


def _app(*middleware: tuple[type, dict]) -> Starlette:
    app = Starlette(routes=[Route("/v1/chat/completions", _echo, methods=["POST"]), Route("/health", _echo)])
    for cls, options in middleware:
        app.add_middleware(cls, **options)
    return app


def _client(app: Starlette) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


def _run(coro):
    return asyncio.run(coro)


def test_keys_guard_v1_only_and_accept_any_configured_key() -> None:
    async def scenario() -> list[int]:
        async with _client(_app((APIKeys, {"keys": ["a", "b"]}))) as client:
            return [
                (await client.post("/v1/chat/completions")).status_code,
                (await client.post("/v1/chat/completions", headers={"Authorization": "Bearer b"})).status_code,
                (await client.post("/v1/chat/completions", headers={"Authorization": "Bearer a "})).status_code,
                (await client.post("/v1/chat/completions", headers={"Authorization": "Basic a"})).status_code,
                (await client.post("/v1/chat/completions", headers={"Authorization": "Bearer ab"})).status_code,
                (await client.get("/health")).status_code,
            ]

    assert _run(scenario()) == [401, 200, 200, 401, 401, 200]


def test_pages_open_without_a_key_and_the_api_takes_it_only_from_the_header() -> None:
    app = _app((APIKeys, {"keys": ["a"]}))
    app.router.routes.append(Route("/playground", _echo))
    app.router.routes.append(Route("/playground/app.js", _echo))

    async def scenario() -> list[int]:
        async with _client(app) as client:
            return [
                (await client.get("/playground")).status_code,
                (await client.get("/playground?key=b")).status_code,
                (await client.get("/playground/app.js")).status_code,
                (await client.post("/v1/chat/completions?key=a")).status_code,
                (await client.post("/v1/chat/completions", headers={"Authorization": "Bearer a"})).status_code,
            ]

    assert _run(scenario()) == [200, 200, 200, 401, 200]


def test_per_key_quota_answers_429_with_retry_after() -> None:
    async def scenario() -> list[httpx.Response]:
        async with _client(_app((APIKeys, {"keys": ["a", "b"], "per_minute": 3}))) as client:
            a = [await client.post("/v1/chat/completions", headers={"Authorization": "Bearer a"}) for _ in range(4)]
            b = await client.post("/v1/chat/completions", headers={"Authorization": "Bearer b"})
            return [*a, b]

    responses = _run(scenario())
    assert [r.status_code for r in responses] == [200, 200, 200, 429, 200]  # quotas are per key
    limited = responses[3]
    assert int(limited.headers["retry-after"]) >= 1
    assert limited.json()["error"]["code"] == 429


def test_body_limit_by_header_and_by_stream() -> None:
    async def chunks():
        for _ in range(10):
            yield b"x" * 100

    async def scenario() -> list[int]:
        async with _client(_app((BodyLimit, {"max_bytes": 500}))) as client:
            return [
                (await client.post("/v1/chat/completions", content=b"x" * 400)).status_code,
                (await client.post("/v1/chat/completions", content=b"x" * 600)).status_code,
                (await client.post("/v1/chat/completions", content=chunks())).status_code,
            ]

    assert _run(scenario()) == [200, 413, 413]


def test_admission_sheds_excess_with_503_and_retry_after() -> None:
    async def scenario() -> list[httpx.Response]:
        async with _client(_app((Admission, {"max_in_flight": 2, "retry_after_s": 3}))) as client:
            return list(await asyncio.gather(*(client.post("/v1/chat/completions?slow=1") for _ in range(5))))

    responses = _run(scenario())
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200, 200, 503, 503, 503]
    shed = next(r for r in responses if r.status_code == 503)
    assert shed.headers["retry-after"] == "3" and shed.json()["error"]["type"] == "ServiceUnavailableError"


@pytest.mark.parametrize(("given", "echoed"), [("trace-1", True), ("x" * 500, False), ("bad\x01id", False)])
def test_request_id_is_echoed_only_when_sane(given: str, echoed: bool) -> None:
    async def scenario() -> httpx.Response:
        async with _client(_app((RequestContext, {}))) as client:
            return await client.get("/health", headers={"X-Request-Id": given})

    try:
        response = _run(scenario())
    except httpx.LocalProtocolError:  # httpx itself refuses control characters in headers
        assert not echoed
        return
    assert (response.headers["x-request-id"] == given) is echoed
    assert response.headers["x-request-id"]


class _TextBody(BaseModel):
    text: str


def test_chunked_body_over_the_cap_is_413_even_through_fastapi_body_parsing() -> None:
    from fastapi import FastAPI

    api = FastAPI()

    @api.post("/v1/chat/completions")
    async def handle(body: _TextBody) -> dict:
        return {"n": len(body.text)}

    api.add_middleware(BodyLimit, max_bytes=500)

    async def chunks():
        yield b'{"text": "'
        for _ in range(10):
            yield b"x" * 100
        yield b'"}'

    async def scenario() -> httpx.Response:
        async with _client(api) as client:
            return await client.post(
                "/v1/chat/completions", content=chunks(), headers={"Content-Type": "application/json"}
            )

    response = _run(scenario())
    assert response.status_code == 413 and response.json()["error"]["code"] == 413


def test_keys_and_admission_see_the_path_under_a_root_path() -> None:
    app = _app((Admission, {"max_in_flight": 1, "retry_after_s": 1}), (APIKeys, {"keys": ["a"]}))
    app.root_path = "/api"

    async def scenario() -> list[int]:
        transport = httpx.ASGITransport(app=app, root_path="/api")
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return [
                (await client.post("/api/v1/chat/completions")).status_code,
                (await client.post("/api/v1/chat/completions", headers={"Authorization": "Bearer a"})).status_code,
            ]

    assert _run(scenario()) == [401, 200]

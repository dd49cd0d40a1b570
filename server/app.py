"""The FastAPI application: vLLM's OpenAI server (models, health, metrics, chat serving) with our routes
for video in front of it.

vLLM builds the app and its state (``build_app`` + ``init_app_state``); we replace its
``/v1/chat/completions`` route by ours (same handler behind it, video handling in front), add the Files API,
the one-shot multipart route and our middleware, and keep everything else of vLLM's as it is.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from argparse import Namespace
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
from fastapi import FastAPI
from starlette.middleware import Middleware
from vllm.engine.protocol import EngineClient
from vllm.entrypoints.launchers.api_server.app_state import init_app_state
from vllm.entrypoints.launchers.app import build_app

from server import chat, files_api, oneshot
from server.errors import install_error_handlers
from server.file_store import FileStore
from server.media import MediaResolver
from server.media_access import MediaAccess
from server.middleware import Admission, APIKeys, BodyLimit, RequestContext
from server.settings import ServerSettings
from server.video_prep import VideoPreparer

LOG = logging.getLogger("spatial_mllm_serve")
# vLLM's routes we keep as they are; every other vLLM route (responses, messages, completions, batch, render,
# tokenize, SageMaker, elastic EP, token-in generate...) is dropped: each would be another way in that
# bypasses our media handling, limits or keys, and none is part of this product's API.
VLLM_ROUTES_KEPT = {"/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc", "/health", "/metrics", "/version"}
VLLM_ROUTES_KEPT |= {"/v1/models"}
SWEEP_INTERVAL_S = 60.0


def geometry_source(model: str, settings: ServerSettings) -> Path | None:
    """Where VGGT weights for space-aware sampling come from: the configured file, else the served checkpoint."""
    if settings.space_aware_weights is not None:
        return settings.space_aware_weights
    local = Path(model)
    if local.is_dir():
        return local
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(model, allow_patterns=["*.json", "*.safetensors"], local_files_only=True))
    except Exception:
        LOG.warning("no local copy of %s: space-aware sampling is unavailable", model)
        return None


async def _sweep_uploads(files: FileStore) -> None:
    while True:
        await asyncio.sleep(SWEEP_INTERVAL_S)
        try:
            await asyncio.to_thread(files.sweep)
        except OSError:
            LOG.exception("sweeping expired uploads failed; retrying in %s s", SWEEP_INTERVAL_S)


@contextlib.asynccontextmanager
async def server_resources(app: FastAPI, settings: ServerSettings) -> AsyncIterator[None]:
    """Our long-lived objects: HTTP client for URLs, worker pool, upload sweeper; closed on shutdown."""
    sweeper = asyncio.create_task(_sweep_uploads(app.state.files))
    try:
        yield
    finally:
        sweeper.cancel()
        await app.state.http.aclose()
        app.state.preparer.shutdown()


async def build_server_app(engine_client: EngineClient, args: Namespace, settings: ServerSettings) -> FastAPI:
    """vLLM's app for ``engine_client`` with our routes, state, error handlers and middleware."""
    supported_tasks = await engine_client.get_supported_tasks()
    app = build_app(args, supported_tasks, engine_client.model_config)
    await init_app_state(engine_client, app.state, args, supported_tasks)

    app.router.routes = [route for route in app.router.routes if getattr(route, "path", None) in VLLM_ROUTES_KEPT]
    for module in (chat, files_api, oneshot):
        app.include_router(module.router)
    install_error_handlers(app)

    state = app.state
    state.settings = settings
    state.served_model_name = (args.served_model_name or [args.model])[0]
    state.max_videos_per_request = settings.max_videos_per_request
    state.files = FileStore(settings.uploads_dir, settings.upload_ttl_s, settings.uploads_quota_bytes)
    state.preparer = VideoPreparer(settings, geometry_source(args.model, settings))
    # trust_env=False: a proxy from the environment would hide the peer address the SSRF check relies on
    state.http = httpx.AsyncClient(timeout=settings.fetch_timeout_s, follow_redirects=False, trust_env=False)
    state.media = MediaResolver(settings, state.files, state.preparer, state.http, MediaAccess.from_args(args))

    vllm_lifespan = app.router.lifespan_context

    @contextlib.asynccontextmanager
    async def lifespan(app_: FastAPI) -> AsyncIterator[None]:
        async with vllm_lifespan(app_), server_resources(app_, settings):
            yield

    app.router.lifespan_context = lifespan

    # vLLM's app has already built its middleware stack, so ours is inserted directly and the stack rebuilt on
    # the next request. Outermost first: request id, body cap, API keys, admission control.
    ours = [
        Middleware(RequestContext),
        Middleware(BodyLimit, max_bytes=settings.max_video_bytes * 4 // 3 + (1 << 20)),
        Middleware(APIKeys, keys=settings.api_keys, per_minute=settings.requests_per_minute_per_key),
        Middleware(Admission, max_in_flight=settings.max_concurrent_requests, retry_after_s=settings.retry_after_s),
    ]
    app.user_middleware[0:0] = ours
    app.middleware_stack = None
    return app

"""The FastAPI application: vLLM's OpenAI server (models, health, metrics, chat serving) with our routes
for video in front of it.

vLLM builds the app and its state (``build_app`` + ``init_app_state``, through :mod:`server.runtime.vllm_seams`); we
keep
the vLLM routes this product serves, add ours (``/v1/chat/completions`` with video handling in front of vLLM's
handler, the Files API, the one-shot multipart route), and wire our resources (:func:`wire_resources`) and
middleware.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from argparse import Namespace
from collections.abc import AsyncIterator, Awaitable
from importlib.metadata import version

import httpx
from fastapi import FastAPI

from sampling.geometry_pass import WorkerConfig
from server.api import chat, files_api, frames_api, health, oneshot, playground
from server.api.middleware import Admission, APIKeys, BodyLimit, RequestContext
from server.errors import install_error_handlers
from server.frames.geometry_worker import GeometryWorker
from server.frames.media_connector import PreparedVideoStore, install_media_connector
from server.frames.video_prep import VideoPreparer
from server.media.inline_media import InlineMedia
from server.media.media_access import MediaAccess
from server.media.resolve import MediaResolver
from server.runtime.settings import ServerSettings
from server.runtime.vllm_seams import (
    EngineClient,
    allow_more_middleware,
    build_vllm_app,
    engine_client,
    keep_routes,
    wrap_lifespan,
)
from server.uploads.file_store import FileStore

LOG = logging.getLogger("spatial_mllm_serve")
# vLLM's routes we keep as they are; every other vLLM route (responses, messages, completions, batch, render,
# tokenize, SageMaker, elastic EP, token-in generate...) is dropped: each would be another way in that
# bypasses our media handling, limits or keys, and none is part of this product's API.
VLLM_ROUTES_KEPT = {"/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc", "/metrics", "/version"}
VLLM_ROUTES_KEPT |= {"/v1/models"}
SWEEP_INTERVAL_S = 60.0
ENGINE_WATCH_INTERVAL_S = 0.5
ENGINE_DEATH_GRACE_S = 15.0


class EngineDiedDuringStartUp(RuntimeError):
    """The engine process died while the app was still starting (the geometry worker loading)."""


async def _while_engine_lives(engine: EngineClient, starting: Awaitable[None]) -> None:
    """Await ``starting``, but stop start-up if the engine dies meanwhile.

    Once serving, vLLM notices a dead engine itself (``/health`` 503, then it stops the server). While our app
    starts, nobody would: uvicorn waits for the start-up to finish, the process never exits and ``/health``
    never answers, so a supervisor cannot tell a slow start from a dead one (seen at full size: the engine
    killed for memory while VGGT loaded for the geometry worker).
    """
    task = asyncio.ensure_future(starting)
    try:
        while not task.done():
            await asyncio.wait({task}, timeout=ENGINE_WATCH_INTERVAL_S)
            if not task.done() and engine.errored:
                # a stop the operator asked for (SIGTERM, Ctrl-C) ends the engine first too, then cancels this
                # start-up within moments: only an engine dead with no such cancellation after the grace period is
                # a death
                await asyncio.wait({task}, timeout=ENGINE_DEATH_GRACE_S)
                if not task.done():
                    raise EngineDiedDuringStartUp("the engine died while the server was starting; see its log above")
    finally:
        if not task.done():  # engine death, or this start-up cancelled: the half-done start goes too
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
    task.result()


async def _sweep_uploads(files: FileStore) -> None:
    """Expired uploads and what crashed processes left (any replica's, on a shared directory) go periodically."""
    while True:
        await asyncio.sleep(SWEEP_INTERVAL_S)
        try:
            await asyncio.to_thread(files.cleanup)
        except OSError:
            LOG.exception("cleaning the upload store failed; retrying in %s s", SWEEP_INTERVAL_S)


def wire_resources(
    app: FastAPI, args: Namespace, settings: ServerSettings, geometry: WorkerConfig | None = None
) -> None:
    """Every long-lived object of our layer, created here, kept on ``app.state``, closed when the app stops.

    The one place to add a resource: create it below and close it in ``resources``.
    """
    state = app.state
    state.settings = settings
    state.served_model_name = (args.served_model_name or [args.model])[0]
    state.max_videos_per_request = settings.max_videos_per_request
    state.prepared_videos = PreparedVideoStore()
    install_media_connector(state.prepared_videos)
    state.files = FileStore.configured(settings)
    state.geometry_plan = geometry
    state.preparer = VideoPreparer(settings, selections=state.files)
    # trust_env=False: a proxy from the environment would hide the peer address the SSRF check relies on
    state.http = httpx.AsyncClient(timeout=settings.fetch_timeout_s, follow_redirects=False, trust_env=False)
    state.media = MediaResolver(
        settings, state.files, state.preparer, state.http, state.prepared_videos, MediaAccess.from_args(args)
    )

    @contextlib.asynccontextmanager
    async def resources(app_: FastAPI) -> AsyncIterator[None]:
        # the geometry worker loads now, so a failure stops start-up instead of a user's request
        worker = GeometryWorker(geometry, settings.space_aware_queue, settings.retry_after_s) if geometry else None
        if worker is not None:
            # a cancelled start kills the half-loaded worker process itself (GeometryWorker._spawn)
            await _while_engine_lives(engine_client(app_.state), worker.start())
        state.preparer.geometry = worker
        sweeper = asyncio.create_task(_sweep_uploads(state.files))
        try:
            yield
        finally:
            sweeper.cancel()
            state.files.close()
            await state.http.aclose()
            state.preparer.shutdown()
            if worker is not None:
                await worker.close()

    wrap_lifespan(app, resources)


def add_our_middleware(app: FastAPI, settings: ServerSettings) -> None:
    """Our middleware, outside vLLM's. ``add_middleware`` puts each outside the ones before, so the order below
    is innermost first: large JSON bodies parsed off the event loop, admission control, API keys, body caps,
    request id (outermost)."""
    allow_more_middleware(app)  # vLLM's build_app built the stack already (server.runtime.vllm_seams)
    # a JSON body never needs more room than one largest video as a data URL (base64 is 4/3 of the bytes)
    json_cap = min(settings.max_json_body_bytes, settings.max_video_bytes * 4 // 3 + (1 << 20))
    app.add_middleware(InlineMedia, max_video_bytes=settings.max_video_bytes)
    app.add_middleware(Admission, max_in_flight=settings.max_concurrent_requests, retry_after_s=settings.retry_after_s)
    app.add_middleware(APIKeys, keys=settings.api_keys, per_minute=settings.requests_per_minute_per_key)
    app.add_middleware(BodyLimit, max_bytes=settings.max_video_bytes + (1 << 20), json_max_bytes=json_cap)
    app.add_middleware(RequestContext)


async def build_server_app(
    engine_client: EngineClient, args: Namespace, settings: ServerSettings, geometry: WorkerConfig | None = None
) -> FastAPI:
    """vLLM's app for ``engine_client`` with our routes, state, resources, error handlers and middleware;
    ``geometry`` (:func:`server.frames.geometry_worker.plan_geometry`) configures space-aware sampling's worker
    (None: off)."""
    app = await build_vllm_app(engine_client, args)
    app.title, app.version = "spatial-mllm-serve", version("spatial-mllm-serve")  # for /docs and /openapi.json
    keep_routes(app, VLLM_ROUTES_KEPT)  # every other vLLM route bypasses our media handling, caps and keys
    for module in (chat, files_api, frames_api, oneshot, health):
        app.include_router(module.router)
    if settings.playground:
        app.include_router(playground.router)
    install_error_handlers(app)
    wire_resources(app, args, settings, geometry)
    add_our_middleware(app, settings)
    return app

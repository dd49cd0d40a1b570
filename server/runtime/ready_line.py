"""When the server says it is ready, it is; when it is stopped before it served, it stops in one line.

vLLM's ``serve_http`` only returns once the server has stopped, and between its start and the first answer lie
uvicorn's start-up and our lifespan (the geometry worker loads VGGT there, seconds on a CPU). So the ready line
is printed by a task beside it that asks the server itself, over its own socket, for ``/health`` and
``/v1/models`` — the two answers a client needs first — and prints only when both are 200.

A SIGINT/SIGTERM in that window reaches vLLM's handler, which stops the engine and hands back uvicorn's
``shutdown`` for a server that never started (it then fails on attributes ``startup`` sets). :func:`finish`
instead ends our lifespan, so the geometry worker and decoder processes close as they would after serving.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from argparse import Namespace
from collections.abc import Coroutine
from typing import Any

import httpx
from fastapi import FastAPI

from server.runtime.lifecycle import stop_children
from server.runtime.settings import ServerSettings

LOG = logging.getLogger("spatial_mllm_serve")
POLL_INTERVAL_S = 0.25
PROBE_TIMEOUT_S = 5.0
LIFESPAN_STOP_TIMEOUT_S = 60.0
READY_PATHS = ("/health", "/v1/models")


def local_base_url(args: Namespace) -> str:
    """How this machine reaches the server: the listening address, with "all addresses" replaced by loopback."""
    scheme = "https" if args.ssl_certfile else "http"
    if getattr(args, "uds", None):
        return f"{scheme}://localhost"
    host = args.host or "127.0.0.1"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return f"{scheme}://{host}:{args.port}"
    if address.is_unspecified:
        address = ipaddress.ip_address("::1" if address.version == 6 else "127.0.0.1")
    shown = f"[{address}]" if address.version == 6 else str(address)
    return f"{scheme}://{shown}:{args.port}"


def _probe_client(args: Namespace, settings: ServerSettings) -> httpx.AsyncClient:
    """A client for our own socket: no proxies from the environment, our own certificate accepted, a key if
    keys are required (``/v1/models`` asks for one)."""
    headers = {"Authorization": f"Bearer {settings.api_keys[0]}"} if settings.api_keys else {}
    transport = httpx.AsyncHTTPTransport(uds=args.uds, verify=False) if getattr(args, "uds", None) else None
    return httpx.AsyncClient(
        base_url=local_base_url(args),
        headers=headers,
        timeout=PROBE_TIMEOUT_S,
        trust_env=False,
        verify=False,
        transport=transport,
    )


async def _answers(client: httpx.AsyncClient) -> bool:
    for path in READY_PATHS:
        try:
            if (await client.get(path)).status_code != 200:
                return False
        except httpx.HTTPError:
            return False
    return True


async def announce_when_answering(app: FastAPI, args: Namespace, settings: ServerSettings, ready_line: str) -> None:
    """Print ``ready_line`` once the server answers ``/health`` and ``/v1/models`` with 200.

    Asking starts once uvicorn reports it started (``serve_http`` puts its server on ``app.state``), so the
    access log shows a request or two, not one per poll of the app's start-up."""
    while not getattr(getattr(app.state, "server", None), "started", False):
        await asyncio.sleep(POLL_INTERVAL_S)
    async with _probe_client(args, settings) as client:
        while not await _answers(client):
            await asyncio.sleep(POLL_INTERVAL_S)
    print(ready_line, flush=True)


async def finish(app: FastAPI, shutdown: Coroutine[Any, Any, None], announcer: asyncio.Task[None]) -> None:
    """Await what ``serve_http`` handed back; for a server stopped before it started, end our lifespan instead."""
    announcer.cancel()
    # vLLM's lifespan deletes app.state when it ends, which it has when the server stopped by itself (vLLM's
    # engine watchdog after the engine died while serving): then there is nothing left to stop
    server = getattr(getattr(app, "state", None), "server", None)
    if server is not None and server.started:
        await shutdown
        return
    shutdown.close()  # uvicorn's shutdown of a server that never started: nothing of it is open
    lifespan = getattr(server, "lifespan", None)
    if lifespan is None:
        return
    # the lifespan may still be starting (the geometry worker loading): it takes the shutdown once started
    try:
        await asyncio.wait_for(lifespan.shutdown(), LIFESPAN_STOP_TIMEOUT_S)
    except TimeoutError:
        LOG.warning("the app's resources did not close within %s s; stopping their processes", LIFESPAN_STOP_TIMEOUT_S)
        stop_children()


def start_announcing(app: FastAPI, args: Namespace, settings: ServerSettings, ready_line: str) -> asyncio.Task[None]:
    """The task that prints ``ready_line`` once the server answers (:func:`finish` ends it)."""
    return asyncio.get_running_loop().create_task(announce_when_answering(app, args, settings, ready_line))

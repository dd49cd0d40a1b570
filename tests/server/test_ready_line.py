"""The ready line waits for real answers, and a server stopped before it started ends its lifespan cleanly
(server/runtime/ready_line.py), on a real uvicorn server with a small app; no engine."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest
import uvicorn
from fastapi import FastAPI, Response
from processes import free_port

from server.runtime.ready_line import finish, local_base_url, start_announcing
from server.runtime.settings import ServerSettings


def _args(port: int, host: str | None = "127.0.0.1") -> argparse.Namespace:
    return argparse.Namespace(host=host, port=port, ssl_certfile=None, uds=None)


@pytest.mark.parametrize(
    ("host", "ssl", "url"),
    [
        (None, None, "http://127.0.0.1:8000"),
        ("0.0.0.0", None, "http://127.0.0.1:8000"),
        ("::", "cert.pem", "https://[::1]:8000"),
        ("10.1.2.3", None, "http://10.1.2.3:8000"),
        ("node.example", None, "http://node.example:8000"),
    ],
)
def test_local_base_url(host: str | None, ssl: str | None, url: str) -> None:
    assert local_base_url(argparse.Namespace(host=host, port=8000, ssl_certfile=ssl, uds=None)) == url


def test_ready_line_waits_for_health_and_models(capsys: pytest.CaptureFixture[str]) -> None:
    """/health answers 503 twice: the line comes only once /health and /v1/models both answer 200."""
    app = FastAPI()
    seen: list[tuple[str, int]] = []
    health = iter([503, 503])

    @app.get("/health")
    async def _health() -> Response:
        status = next(health, 200)
        seen.append(("/health", status))
        return Response(status_code=status)

    @app.get("/v1/models")
    async def _models() -> Response:
        return Response(status_code=200)

    async def scenario() -> None:
        port = free_port()
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
        announcer = start_announcing(app, _args(port), ServerSettings(), "READY")
        await asyncio.sleep(0.5)
        assert not announcer.done()  # no server on app.state yet: nothing asked, nothing printed
        app.state.server = server
        serving = asyncio.create_task(server.serve())
        await asyncio.wait_for(announcer, 30)
        server.should_exit = True
        await serving

    asyncio.run(scenario())
    assert capsys.readouterr().out == "READY\n"
    assert seen == [("/health", 503), ("/health", 503), ("/health", 200)]


def test_finish_on_a_server_that_never_started_ends_the_lifespan() -> None:
    """As after a signal during the app's start-up: uvicorn's own shutdown would fail (it never bound), so the
    lifespan is ended instead and the app's resources close."""
    closed = asyncio.Event()
    starting = asyncio.Event()

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        starting.set()
        await asyncio.sleep(0.3)  # a resource still loading when the stop comes
        try:
            yield
        finally:
            closed.set()

    app = FastAPI(lifespan=lifespan)

    async def scenario() -> None:
        port = free_port()
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
        app.state.server = server
        announcer = start_announcing(app, _args(port), ServerSettings(), "READY")
        serving = asyncio.create_task(server.serve())
        await starting.wait()
        serving.cancel()  # what vLLM's signal handler does
        with contextlib.suppress(asyncio.CancelledError):
            await serving
        assert not server.started
        await finish(app, server.shutdown(), announcer)
        assert closed.is_set() and announcer.cancelled()

    asyncio.run(scenario())


def test_finish_after_vllms_lifespan_deleted_the_apps_state() -> None:
    """vLLM's watchdog stops the server when the engine dies while serving, and vLLM's lifespan then deletes
    ``app.state``: finishing must not fail on it (it used to end the process with an AttributeError traceback)."""
    app = FastAPI()
    del app.state  # what vLLM's lifespan does on its way out
    shutdown_ran = False

    async def shutdown() -> None:
        nonlocal shutdown_ran
        shutdown_ran = True

    async def scenario() -> asyncio.Task[None]:
        announcer = asyncio.create_task(asyncio.sleep(3600))
        await finish(app, shutdown(), announcer)
        await asyncio.sleep(0)
        return announcer

    announcer = asyncio.run(scenario())
    assert announcer.cancelled() and not shutdown_ran  # the server had stopped already: nothing left to await

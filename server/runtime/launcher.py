"""Process lifecycle: bind the port, answer 503 while the engine loads, then serve the real app.

vLLM's own entry (``run_server_worker`` / ``build_and_serve``) builds vLLM's app and offers no hook to extend it, so
this module does what it does, step for step, with our app: the same parser plugins, the same engine client, the
same ``serve_http`` (signal handling, graceful drain, engine watchdog) with the same uvicorn options and log config
(those copied steps live in :mod:`server.runtime.vllm_seams`). Engine flags without meaning here were refused by
:mod:`server.runtime.preflight` before anything started.

The port is bound first (as ``vllm serve`` does) and a small "starting" app answers on it at once, so health
probes see 503 instead of hanging while weights load. When the engine is up, the starting server lets go of
its duplicate of the socket and ``serve_http`` serves the full app on the original socket; connections arriving
in between wait in the listen backlog.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import sys
import threading
from argparse import Namespace
from collections.abc import Callable, Mapping, Sequence

import uvicorn
from starlette.types import Receive, Scope, Send

from model_plugin.seed_rules import SEED_GENERATION
from server.errors import error_response
from server.frames.geometry_worker import plan_geometry
from server.runtime.app import build_server_app
from server.runtime.preflight import ConfigError
from server.runtime.ready_line import finish, start_announcing
from server.runtime.settings import ServerSettings
from server.runtime.vllm_seams import (
    build_async_engine_client,
    load_parser_plugins,
    serve_app,
    setup_server,
    uvicorn_log_options,
)

ParseArgs = Callable[[Sequence[str], Mapping[str, str]], tuple[Namespace, ServerSettings]]


async def starting_app(scope: Scope, receive: Receive, send: Send) -> None:
    """Every HTTP request while the engine loads: 503 with Retry-After, in OpenAI's error shape."""
    if scope["type"] == "lifespan":
        while True:
            kind = (await receive())["type"]
            await send({"type": kind + ".complete"})
            if kind == "lifespan.shutdown":
                return
    if scope["type"] == "http":
        await error_response(503, "The model is still loading.", retry_after=5)(scope, receive, send)


def engine_defaults(args: Namespace, settings: ServerSettings) -> None:
    """Engine options that follow from our caps when the operator did not set them: the multimodal limits vLLM
    profiles memory with are exactly the largest video a request may bring."""
    if not args.limit_mm_per_prompt:
        side = int(settings.max_pixels_per_frame**0.5) // 28 * 28
        args.limit_mm_per_prompt = {
            "video": {
                "count": settings.max_videos_per_request,
                "num_frames": settings.max_num_frames,
                "width": side,
                "height": side,
            },
            "image": {"count": 1},
        }
    elif isinstance(args.limit_mm_per_prompt, str):
        args.limit_mm_per_prompt = json.loads(args.limit_mm_per_prompt)
    seed_decoding_defaults(args)


def seed_decoding_defaults(args: Namespace) -> None:
    """A request that sets no sampling parameter decodes as the original's scripts: their explicit ``generate``
    arguments over the checkpoint's ``generation_config.json``. The operator's ``--override-generation-config``
    wins key by key; ``--generation-config vllm`` (vLLM's neutral defaults) is left alone."""
    if getattr(args, "generation_config", "auto") == "vllm":
        return
    args.override_generation_config = {**SEED_GENERATION, **(args.override_generation_config or {})}


def refuse_unsupported_options(args: Namespace) -> None:
    """Exit with one line, before the port is bound and the engine loads, when an engine option would let video
    bypass the spatial encoder (the model class refuses the same options when vLLM builds it)."""
    from vllm.engine.arg_utils import AsyncEngineArgs

    from model_plugin.capabilities import UnsupportedCapability, refuse_unsupported_capabilities

    try:
        refuse_unsupported_capabilities(AsyncEngineArgs.from_cli_args(args).create_engine_config())
    except UnsupportedCapability as exc:
        raise ConfigError(str(exc)) from None


def ready_banner(listen_address: str, args: Namespace, settings: ServerSettings) -> str:
    """The line to paste: a curl of the one-shot route with the demo's sample video (or your own).

    Keys are never printed; with keys the command reads one from ``$API_KEY`` and, when it is unset, the shell
    says so instead of sending a request that can only get a 401.
    """
    host = listen_address.replace("0.0.0.0", "127.0.0.1")
    video = getattr(args, "sample_video", None) or "room.mp4"
    key = ' -H "Authorization: Bearer ${API_KEY:?set API_KEY to one of your API keys}"' if settings.api_keys else ""
    return (
        f"\nspatial-mllm-serve is ready on {listen_address} (model: {(args.served_model_name or [args.model])[0]}).\n"
        f"Try:\n  curl{key} -F video=@{video} -F question='How many chairs are in this room?' "
        f"-F max_tokens=32 {host}/v1/video/chat\n"
    )


async def run_server(args: Namespace, settings: ServerSettings) -> None:
    """Serve until SIGINT/SIGTERM."""
    load_parser_plugins(args)
    engine_defaults(args, settings)
    uvicorn_options = uvicorn_log_options(args)
    refuse_unsupported_options(args)
    geometry = plan_geometry(args, settings)  # refuses an impossible memory budget before the engine loads
    listen_address, sock = setup_server(args, reuse_port=False)
    # Engine start-up blocks this event loop, so the starting app gets a thread and an event loop of its own.
    gate = uvicorn.Server(uvicorn.Config(starting_app, log_level="warning", lifespan="on"))
    gate_socket = socket.socket(fileno=os.dup(sock.fileno()))
    gate_thread = threading.Thread(target=asyncio.run, args=(gate.serve(sockets=[gate_socket]),), daemon=True)
    gate_thread.start()
    try:
        async with build_async_engine_client(args) as engine_client:
            app = await build_server_app(engine_client, args, settings, geometry)
            gate.should_exit = True
            await asyncio.to_thread(gate_thread.join)
            announcer = start_announcing(app, args, settings, ready_banner(listen_address, args, settings))
            shutdown = await serve_app(app, sock, args, **uvicorn_options)
        await finish(app, shutdown, announcer)
    finally:
        gate.should_exit = True
        gate_thread.join(timeout=5)
        sock.close()
        print(f"spatial-mllm-serve: stopped (was listening on {listen_address}).", flush=True)


class _SkipPaths(logging.Filter):
    """Drops access lines of the paths named by ``--disable-access-log-for-endpoints``."""

    def __init__(self, paths: set[str]) -> None:
        super().__init__()
        self.paths = paths

    def filter(self, record: logging.LogRecord) -> bool:
        return json.loads(record.getMessage()).get("path") not in self.paths


def configure_logs(args: Namespace) -> None:
    """Our log lines on stdout beside vLLM's: our warnings, and one JSON line per request in place of uvicorn's
    access line, with uvicorn's switches (``--disable-uvicorn-access-log``, ``--disable-access-log-for-endpoints``).
    """
    ours = logging.getLogger("spatial_mllm_serve")
    if not ours.handlers:
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter("%(message)s"))
        ours.addHandler(handler)
        ours.setLevel(logging.INFO)
        ours.propagate = False
    access = logging.getLogger("spatial_mllm_serve.access")
    access.disabled = args.disable_uvicorn_access_log
    if args.disable_access_log_for_endpoints:
        access.addFilter(_SkipPaths({path.strip() for path in args.disable_access_log_for_endpoints.split(",")}))


def serve(argv: Sequence[str], parse_args: ParseArgs) -> None:
    """Parse with vLLM's parser, check, and serve (``uvloop``, as ``vllm serve``)."""
    import uvloop

    from server.runtime.vllm_seams import cli_env_setup, configure_logging_from_args, validate_parsed_serve_args

    cli_env_setup()
    args, settings = parse_args(argv, os.environ)
    configure_logging_from_args(args)
    try:
        validate_parsed_serve_args(args)
    except (TypeError, ValueError) as exc:
        raise ConfigError(str(exc)) from exc
    configure_logs(args)
    uvloop.run(run_server(args, settings))

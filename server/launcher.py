"""Process lifecycle: bind the port, answer 503 while the engine loads, then serve the real app.

The port is bound first (as ``vllm serve`` does) and a small "starting" app answers on it at once, so health
probes see 503 instead of hanging while weights load. When the engine is up, the starting server lets go of
its duplicate of the socket and vLLM's ``serve_http`` (signal handling, graceful drain, engine watchdog)
serves the full app on the original socket; connections arriving in between wait in the listen backlog.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import threading
from argparse import Namespace

import uvicorn
import vllm.envs as envs
from starlette.types import Receive, Scope, Send
from vllm.entrypoints.launchers.api_server.entry import build_async_engine_client
from vllm.entrypoints.launchers.launcher import serve_http, setup_server

from model_plugin.seed_rules import SEED_GENERATION
from server.app import build_server_app
from server.connector import CONNECTOR_NAME
from server.errors import error_response
from server.settings import ServerSettings


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
        raise SystemExit(f"spatial-mllm-serve: {exc}") from None


def ready_banner(listen_address: str, args: Namespace, settings: ServerSettings) -> str:
    """The line to paste: a curl of the one-shot route with the demo's sample video (or your own)."""
    host = listen_address.replace("0.0.0.0", "127.0.0.1")
    video = getattr(args, "sample_video", None) or "room.mp4"
    key = ' -H "Authorization: Bearer $API_KEY"' if settings.api_keys else ""
    return (
        f"\nspatial-mllm-serve is ready on {listen_address} (model: {(args.served_model_name or [args.model])[0]}).\n"
        f"Try:\n  curl{key} -F video=@{video} -F question='How many chairs are in this room?' "
        f"-F max_tokens=32 {host}/v1/video/chat\n"
    )


async def run_server(args: Namespace, settings: ServerSettings) -> None:
    """Serve until SIGINT/SIGTERM."""
    os.environ["VLLM_MEDIA_CONNECTOR"] = CONNECTOR_NAME  # videos reach vLLM only as our prepared frames
    engine_defaults(args, settings)
    refuse_unsupported_options(args)
    listen_address, sock = setup_server(args, reuse_port=False)
    # Engine start-up blocks this event loop, so the starting app gets a thread and an event loop of its own.
    gate = uvicorn.Server(uvicorn.Config(starting_app, log_level="warning", lifespan="on"))
    gate_socket = socket.socket(fileno=os.dup(sock.fileno()))
    gate_thread = threading.Thread(target=asyncio.run, args=(gate.serve(sockets=[gate_socket]),), daemon=True)
    gate_thread.start()
    try:
        async with build_async_engine_client(args) as engine_client:
            app = await build_server_app(engine_client, args, settings)
            gate.should_exit = True
            await asyncio.to_thread(gate_thread.join)
            print(ready_banner(listen_address, args, settings), flush=True)
            shutdown = await serve_http(
                app,
                sock=sock,
                enable_ssl_refresh=args.enable_ssl_refresh,
                host=args.host,
                port=args.port,
                log_level=args.uvicorn_log_level,
                access_log=not args.disable_uvicorn_access_log,
                timeout_keep_alive=envs.VLLM_HTTP_TIMEOUT_KEEP_ALIVE,
                ssl_keyfile=args.ssl_keyfile,
                ssl_certfile=args.ssl_certfile,
                ssl_ca_certs=args.ssl_ca_certs,
                ssl_cert_reqs=args.ssl_cert_reqs,
                ssl_ciphers=args.ssl_ciphers,
                h11_max_incomplete_event_size=args.h11_max_incomplete_event_size,
                h11_max_header_count=args.h11_max_header_count,
            )
        await shutdown
    finally:
        gate.should_exit = True
        gate_thread.join(timeout=5)
        sock.close()
        print(f"spatial-mllm-serve on {listen_address} stopped", flush=True)

"""Every touch of vLLM's server internals, in one place, each with why and the upstream hook that would replace it.

vLLM's OpenAI server is used as a library: its app factory, state, chat serving, launcher and media loading. Where
vLLM offers no hook for what we need, we reach into it here and nowhere else; the rest of ``server/`` imports vLLM
only through this module (besides ``vllm.engine.arg_utils`` and ``vllm.platforms``, vLLM's documented engine-args
and platform APIs). :data:`SEAMS` lists every touch; ``tests/server/test_vllm_seams.py`` checks each against the
installed vLLM without starting an engine (signatures, attributes, the routes ``build_app`` makes, the source of
the two launcher functions copied below, the model-side hooks of :data:`MODEL_SEAMS`), so a vLLM upgrade fails
there, naming the seam and what to change, instead of as a parity diff far from its cause.
"""

from __future__ import annotations

import contextlib
import socket
from argparse import Namespace
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import vllm.envs as envs
from fastapi import FastAPI
from vllm.engine.protocol import EngineClient
from vllm.entrypoints.launchers.api_server.app_state import init_app_state
from vllm.entrypoints.launchers.api_server.entry import build_async_engine_client
from vllm.entrypoints.launchers.app import build_app
from vllm.entrypoints.launchers.cli_args import make_arg_parser, validate_parsed_serve_args
from vllm.entrypoints.launchers.launcher import serve_http, setup_server
from vllm.entrypoints.launchers.utils.server_utils import get_uvicorn_log_config
from vllm.entrypoints.openai.chat_completion.protocol import ChatCompletionRequest, ChatCompletionResponse
from vllm.entrypoints.serve.engine.protocol import ErrorInfo, ErrorResponse
from vllm.entrypoints.serve.utils.api_utils import cli_env_setup, with_cancellation
from vllm.entrypoints.serve.utils.sse_keep_alive import with_sse_keep_alive
from vllm.exceptions import VLLMValidationError
from vllm.logger import configure_logging_from_args
from vllm.multimodal.media import MEDIA_CONNECTOR_REGISTRY, MediaConnector
from vllm.multimodal.media.base import MediaWithBytes
from vllm.reasoning import ReasoningParserManager
from vllm.tool_parsers import ToolParserManager
from vllm.utils.argparse_utils import FlexibleArgumentParser
from vllm.v1.engine.exceptions import EngineDeadError

__all__ = [  # vLLM's server names the rest of server/ uses, imported from here only
    "ChatCompletionRequest",
    "ChatCompletionResponse",
    "EngineClient",
    "EngineDeadError",
    "ErrorInfo",
    "ErrorResponse",
    "FlexibleArgumentParser",
    "MediaConnector",
    "MediaWithBytes",
    "VLLMValidationError",
    "build_async_engine_client",
    "cli_env_setup",
    "configure_logging_from_args",
    "make_arg_parser",
    "setup_server",
    "validate_parsed_serve_args",
    "with_cancellation",
    "with_sse_keep_alive",
]


@dataclass(frozen=True)
class Seam:
    """One touch of vLLM: what we rely on upstream (``module:qualified.name``, or a module), why, and what would
    replace it.

    ``parameters``: the leading parameter names (without ``self``) we call or override, in order. ``members``:
    attributes that must exist on ``upstream``. ``source_sha256``: for code we copy or mirror, the digest of upstream's
    source (whitespace-normalised) when the copy was last compared with it."""

    name: str
    upstream: str
    why: str
    hook: str
    parameters: tuple[str, ...] = ()
    members: tuple[str, ...] = ()
    source_sha256: str = ""


# --- the app: vLLM's factory and state, then three pokes it has no hook for ---------------------------------------


async def build_vllm_app(engine_client: EngineClient, args: Namespace) -> FastAPI:
    """vLLM's app and state for ``engine_client``: the first half of ``build_and_serve`` (the rest is
    :func:`serve_app`), which builds and serves in one call with no way to change the app in between."""
    supported_tasks = await engine_client.get_supported_tasks()
    app = build_app(args, supported_tasks, engine_client.model_config)
    await init_app_state(engine_client, app.state, args, supported_tasks)
    return app


def keep_routes(app: FastAPI, kept_paths: set[str]) -> None:
    """Drop every route of vLLM's app whose path is not in ``kept_paths``: ``build_app`` registers all its routers
    with no way to pick them."""
    app.router.routes = [route for route in app.router.routes if getattr(route, "path", None) in kept_paths]


def wrap_lifespan(app: FastAPI, resources: Callable[[FastAPI], contextlib.AbstractAsyncContextManager[None]]) -> None:
    """Run ``resources`` inside vLLM's lifespan: ``build_app`` fixes the app's one lifespan, so ours wraps it."""
    vllm_lifespan = app.router.lifespan_context

    @contextlib.asynccontextmanager
    async def lifespan(app_: FastAPI) -> AsyncIterator[None]:
        async with vllm_lifespan(app_), resources(app_):
            yield

    app.router.lifespan_context = lifespan


def allow_more_middleware(app: FastAPI) -> None:
    """Let ``add_middleware`` work on vLLM's app: its SageMaker bootstrap (in ``build_app``) builds the middleware
    stack early and Starlette refuses new middleware once it is built; it builds it again on the first request
    when it is None."""
    app.middleware_stack = None


# vLLM's app state our routes read (set by ``init_app_state`` and the routers it initialises)
def chat_serving(state: Any) -> Any:
    """vLLM's ``OpenAIServingChat`` of the app (None when the model does not generate)."""
    return state.openai_serving_chat


def engine_client(state: Any) -> EngineClient:
    return state.engine_client


def serve_args(state: Any) -> Namespace:
    """The parsed command line ``build_app`` keeps on the app."""
    return state.args


# --- the launcher: vLLM's ``run_server_worker`` / ``build_and_serve``, step for step, with our app -----------------


def load_parser_plugins(args: Namespace) -> None:
    """``--tool-parser-plugin`` and ``--reasoning-parser-plugin``, loaded as ``run_server_worker`` loads them."""
    if args.tool_parser_plugin:
        ToolParserManager.import_tool_parser(args.tool_parser_plugin)
    if args.reasoning_parser_plugin:
        ReasoningParserManager.import_reasoning_parser(args.reasoning_parser_plugin)


def uvicorn_log_options(args: Namespace) -> dict[str, Any]:
    """uvicorn's log config from ``--log-config-file`` / access-log filters, as ``build_and_serve`` passes it."""
    log_config = get_uvicorn_log_config(args)
    return {"log_config": log_config} if log_config is not None else {}


async def serve_app(app: FastAPI, sock: socket.socket, args: Namespace, **uvicorn_options: Any) -> Any:
    """``serve_http`` (signal handling, graceful drain, engine watchdog) with the uvicorn options
    ``build_and_serve`` passes, except the access log: one line per request is ours
    (:class:`server.api.middleware.RequestContext`). Returns the task that ends when the server has shut down."""
    return await serve_http(
        app,
        sock=sock,
        enable_ssl_refresh=args.enable_ssl_refresh,
        host=args.host,
        port=args.port,
        log_level=args.uvicorn_log_level,
        access_log=False,
        timeout_keep_alive=envs.VLLM_HTTP_TIMEOUT_KEEP_ALIVE,
        ssl_keyfile=args.ssl_keyfile,
        ssl_certfile=args.ssl_certfile,
        ssl_ca_certs=args.ssl_ca_certs,
        ssl_cert_reqs=args.ssl_cert_reqs,
        ssl_ciphers=args.ssl_ciphers,
        h11_max_incomplete_event_size=args.h11_max_incomplete_event_size,
        h11_max_header_count=args.h11_max_header_count,
        **uvicorn_options,
    )


# --- media: the process-wide connector ----------------------------------------------------------------------------


def register_media_connector(connector: type[MediaConnector]) -> None:
    """Make vLLM's chat renderer in this process load media through ``connector``.

    vLLM picks its connector by one process-wide name (``VLLM_MEDIA_CONNECTOR``, "http" unless set) with no per-app
    hook, so the class registered under that name is replaced. One process serves one app: the last app wired wins.
    """
    MEDIA_CONNECTOR_REGISTRY.register(envs.VLLM_MEDIA_CONNECTOR)(connector)


def media_connector_class() -> type[MediaConnector]:
    """The class vLLM's renderer instantiates now (for checks: it must be ours once an app is wired)."""
    return MEDIA_CONNECTOR_REGISTRY.name2class[envs.VLLM_MEDIA_CONNECTOR]


APP = "vllm.entrypoints.launchers.app"
ENTRY = "vllm.entrypoints.launchers.api_server.entry"
LAUNCHER = "vllm.entrypoints.launchers.launcher"
SERVE_UTILS = "vllm.entrypoints.serve.utils"
NO_HOOK = "none upstream yet"

SEAMS: tuple[Seam, ...] = (
    Seam(
        "build_vllm_app",
        f"{APP}:build_app",
        "vLLM's app factory (routers, exception handlers, CORS, SageMaker); we extend the app it returns",
        "an app-factory hook in build_and_serve would let us pass ours",
        parameters=("args", "supported_tasks", "model_config"),
    ),
    Seam(
        "build_vllm_app",
        "vllm.entrypoints.launchers.api_server.app_state:init_app_state",
        "sets up vLLM's serving objects (chat, models) on app.state, which our routes call",
        NO_HOOK + " (stable since 0.30)",
        parameters=("engine_client", "state", "args", "supported_tasks"),
    ),
    Seam(
        "build_vllm_app, engine_client",
        "vllm.engine.protocol:EngineClient",
        "the engine our app serves: tasks and model config at build, liveness for /health and /ready",
        NO_HOOK,
        members=("get_supported_tasks", "check_health", "errored"),
    ),
    Seam(
        "keep_routes",
        f"{APP}:build_app",
        "build_app registers every router (responses, completions, tokenize, SageMaker...); each would bypass our "
        "media handling, caps and keys, so all but a few are dropped from app.router.routes",
        "a route or router selection argument to build_app / register_api_routers",
    ),
    Seam(
        "wrap_lifespan",
        "vllm.entrypoints.launchers.utils.server_utils:lifespan",
        "build_app fixes the app's single lifespan (this one); ours (geometry worker, upload sweeper) runs inside it",
        "a lifespan argument (or resource hook) on build_app",
        parameters=("app",),
    ),
    Seam(
        "allow_more_middleware",
        "vllm.entrypoints.serve.sagemaker.api_router:sagemaker_standards_bootstrap",
        "it builds the middleware stack inside build_app, after which Starlette refuses add_middleware",
        "a middleware argument on build_app, or a bootstrap that leaves the stack unbuilt",
        parameters=("app",),
    ),
    Seam(
        "chat_serving, engine_client, serve_args",
        "vllm.entrypoints.openai.chat_completion.serving:OpenAIServingChat",
        "our /v1/chat/completions hands the rewritten request to vLLM's chat serving on app.state",
        NO_HOOK,
        members=("create_chat_completion",),
    ),
    Seam(
        "serve_app, build_vllm_app",
        f"{ENTRY}:build_and_serve",
        "copied: it builds vLLM's app and serves it in one call; we serve our app with the same uvicorn options",
        "an app-factory hook in build_and_serve (then call it instead of serve_app)",
        parameters=("engine_client", "listen_address", "sock", "args", "peer_loads"),
        source_sha256="0afb42cef9a1e9238be5d046c891d5fdcce6f4190f783b81a535119a405a9ccb",
    ),
    Seam(
        "load_parser_plugins, launcher.run_server",
        f"{ENTRY}:run_server_worker",
        "copied: the launcher does its steps (parser plugins, engine client, build, serve) with our app",
        "an app-factory hook in run_server_worker",
        parameters=("listen_address", "sock", "args", "client_config"),
        source_sha256="bab9259c653bbafd7b4bc3a5393636654df6b2047df6c1ef3dcc38e479490d82",
    ),
    Seam(
        "serve_app",
        f"{LAUNCHER}:serve_http",
        "vLLM's uvicorn runner (signals, graceful drain, engine watchdog), called with our app",
        NO_HOOK,
        parameters=("app", "sock", "enable_ssl_refresh"),
    ),
    Seam(
        "launcher.run_server",
        f"{LAUNCHER}:setup_server",
        "binds the port before the engine loads, as vllm serve does",
        NO_HOOK,
        parameters=("args",),
    ),
    Seam(
        "launcher.run_server",
        f"{ENTRY}:build_async_engine_client",
        "the engine client (engine processes) vllm serve would start",
        NO_HOOK,
        parameters=("args",),
    ),
    Seam(
        "uvicorn_log_options",
        "vllm.entrypoints.launchers.utils.server_utils:get_uvicorn_log_config",
        "uvicorn's log config as vllm serve builds it",
        NO_HOOK,
        parameters=("args",),
    ),
    Seam(
        "load_parser_plugins",
        "vllm.tool_parsers:ToolParserManager",
        "--tool-parser-plugin, loaded as vllm serve loads it",
        NO_HOOK,
        members=("import_tool_parser",),
    ),
    Seam(
        "load_parser_plugins",
        "vllm.reasoning:ReasoningParserManager",
        "--reasoning-parser-plugin, loaded as vllm serve loads it",
        NO_HOOK,
        members=("import_reasoning_parser",),
    ),
    Seam(
        "cli.build_parser",
        "vllm.entrypoints.launchers.cli_args:make_arg_parser",
        "vllm serve's options (engine and server) in our parser, with a few of its defaults changed",
        NO_HOOK,
        parameters=("parser",),
    ),
    Seam(
        "launcher.serve",
        "vllm.entrypoints.launchers.cli_args:validate_parsed_serve_args",
        "vllm serve's own checks of the parsed options",
        NO_HOOK,
        parameters=("args",),
    ),
    Seam(
        "launcher.serve",
        f"{SERVE_UTILS}.api_utils:cli_env_setup",
        "vllm serve's process environment (multiprocessing method) before the engine starts",
        NO_HOOK,
    ),
    Seam(
        "launcher.serve",
        "vllm.logger:configure_logging_from_args",
        "vllm serve's logging options",
        NO_HOOK,
        parameters=("args",),
    ),
    Seam(
        "chat, oneshot",
        f"{SERVE_UTILS}.api_utils:with_cancellation",
        "aborts the engine request when the client disconnects, as vLLM's own routes do",
        NO_HOOK,
        parameters=("handler_func",),
    ),
    Seam(
        "chat",
        f"{SERVE_UTILS}.sse_keep_alive:with_sse_keep_alive",
        "--sse-keep-alive-interval on our streams, as on vLLM's",
        NO_HOOK,
        parameters=("generator", "interval"),
    ),
    Seam(
        "errors",
        "vllm.entrypoints.serve.engine.protocol:ErrorInfo",
        "our errors are vLLM's error model, so every route answers in one shape",
        NO_HOOK,
        members=("message", "type", "param", "code"),
    ),
    Seam(
        "errors, chat",
        "vllm.entrypoints.serve.engine.protocol:ErrorResponse",
        "vLLM's chat serving returns errors in it; ours are built from it",
        NO_HOOK,
        members=("error",),
    ),
    Seam(
        "protocol.SpatialChatCompletionRequest",
        "vllm.entrypoints.openai.chat_completion.protocol:ChatCompletionRequest",
        "our chat request is vLLM's plus video_sampling; media options are folded into ours or refused",
        NO_HOOK,
        members=("model", "messages", "stream", "max_tokens", "media_io_kwargs", "mm_processor_kwargs"),
    ),
    Seam(
        "register_media_connector, media_connector.PreparedVideoConnector",
        "vllm.multimodal.media:MEDIA_CONNECTOR_REGISTRY",
        "vLLM picks its media connector by one process-wide name; ours is registered under it (last app wins)",
        "a per-app (or per-request) media connector argument to init_app_state / the chat renderer",
        members=("register", "load", "name2class"),
    ),
    Seam(
        "media_connector.PreparedVideoConnector",
        "vllm.multimodal.media:MediaConnector",
        "subclassed: videos come from our prepared-frame store, images only inline",
        NO_HOOK,
        members=("fetch_video", "fetch_video_async", "fetch_image", "fetch_image_async"),
    ),
    Seam(
        "media_connector.PreparedVideoConnector",
        "vllm.multimodal.media.base:MediaWithBytes",
        "the bytes vLLM hashes for its caches: our sampling key",
        NO_HOOK,
        parameters=("media", "original_bytes"),
    ),
    Seam(
        "register_media_connector, serve_app",
        "vllm.envs",
        "the connector name vLLM loads, and vllm serve's keep-alive for uvicorn",
        NO_HOOK,
        members=("VLLM_MEDIA_CONNECTOR", "VLLM_HTTP_TIMEOUT_KEEP_ALIVE"),
    ),
)

# vLLM's ``OpenAIServingChat`` is set on app.state under this name by some module of vllm.entrypoints
STATE_ATTRIBUTES = ("openai_serving_chat", "engine_client", "args")

# The model side (model_plugin/vllm_base.py): a subclass of vLLM's Qwen2.5-VL that overrides its multimodal
# processing hooks, as vLLM's own derivatives do. Not a poke, but private names that an upgrade may rename.
QWEN = "vllm.model_executor.models.qwen2_5_vl"
MODEL_SEAMS: tuple[Seam, ...] = (
    Seam(
        "SpatialQwen2_5_VL._process_video_input",
        f"{QWEN}:Qwen2_5_VLForConditionalGeneration._process_video_input",
        "the spatial encoder and connector add their delta to the ViT's video embeddings here, before caching",
        "a public post-vision-encoder hook on the model",
        parameters=("video_input",),
    ),
    Seam(
        "SpatialQwen2_5_VL._process_image_input",
        f"{QWEN}:Qwen2_5_VLForConditionalGeneration._process_image_input",
        "the same for images (two identical frames through VGGT)",
        "a public post-vision-encoder hook on the model",
        parameters=("image_input",),
    ),
    Seam(
        "SpatialQwen2_5_VL.__init__",
        f"{QWEN}:Qwen2_5_VLForConditionalGeneration._mark_tower_model",
        "the spatial modules are tower modules, skipped when --limit-mm-per-prompt is 0 for image and video",
        NO_HOOK,
        parameters=("vllm_config", "modalities"),
    ),
    Seam(
        "SpatialQwen2_5_VL.load_weights",
        f"{QWEN}:Qwen2_5_VLForConditionalGeneration",
        "both checkpoint key layouts through Qwen's own mapper",
        NO_HOOK,
        members=("hf_to_vllm_mapper", "load_weights"),
    ),
    Seam(
        "SpatialQwen2_5_VL._process_video_input",
        f"{QWEN}:Qwen2_5_VLVideoPixelInputs",
        "the frames are rebuilt from these fields (no second copy travels)",
        NO_HOOK,
        members=("type", "pixel_values_videos", "video_grid_thw"),
    ),
    Seam(
        "SpatialQwen2_5_VL._process_image_input",
        f"{QWEN}:Qwen2_5_VLImagePixelInputs",
        "the image's frames are rebuilt from these fields",
        NO_HOOK,
        members=("type", "pixel_values", "image_grid_thw"),
    ),
    Seam(
        "SpatialQwen2_5_VL.load_weights",
        "vllm.model_executor.models.utils:AutoWeightsLoader.load_weights",
        "loads our modules by name with Qwen's mapper",
        NO_HOOK,
        parameters=("weights", "mapper"),
    ),
    # model_plugin/hf_processor.py: the HF processor built from its parts around vLLM's tokenizer, because
    # transformers 5 loads and drops a tokenizer of its own when given one (about 9 s in each of vLLM's processes).
    Seam(
        "SpatialProcessingInfo.get_hf_processor",
        f"{QWEN}:Qwen2_5_VLProcessingInfo.get_hf_processor",
        "served from the processor built from its parts; anything else falls back to this",
        "transformers' ProcessorMixin.from_pretrained not loading a tokenizer it is given",
        parameters=("kwargs",),
    ),
    Seam(
        "SpatialProcessingInfo._processor_from_parts",
        "vllm.multimodal.processing.context:InputProcessingContext",
        "the model config, vLLM's tokenizer and the merged processor arguments, as vLLM's own path reads them",
        NO_HOOK,
        members=("model_config", "tokenizer", "get_merged_mm_kwargs"),
    ),
    Seam(
        "SpatialProcessingInfo._processor_from_parts",
        "vllm.transformers_utils.repo_utils:get_non_weight_snapshot_path",
        "the folder vLLM's own processor path loads from (a Hub id's non-weight snapshot)",
        NO_HOOK,
        parameters=("repo_id", "revision"),
    ),
    Seam(
        "SpatialProcessingInfo._changes_construction",
        "vllm.transformers_utils.processor:cached_get_processor_without_dynamic_kwargs",
        "which arguments make vLLM build a processor (the rest are call-time): mirrored, not called",
        NO_HOOK,
        source_sha256="64a8d8b61f33a48b39aebe5c6039720747484ca758712f305a6525b69d9b12f8",
    ),
    Seam(
        "SpatialProcessingInfo._changes_construction",
        "vllm.transformers_utils.processor:get_processor_kwargs_keys",
        "the processor's call-time argument names, by vLLM's own rule",
        NO_HOOK,
        parameters=("kwargs_cls",),
    ),
    Seam(
        "SpatialProcessingInfo._changes_construction",
        "vllm.transformers_utils.processor:get_processor_kwargs_type",
        "the processor's call-time argument type, by vLLM's own rule",
        NO_HOOK,
        parameters=("processor",),
    ),
    Seam(
        "processor_from_parts",
        "transformers.processing_utils:ProcessorMixin._get_arguments_from_pretrained",
        "the parts from_pretrained loads (Auto classes for the primary ones): mirrored, tokenizer aside",
        "transformers' ProcessorMixin.from_pretrained not loading a tokenizer it is given",
        source_sha256="e83a294734ed6bf3547dcadafad32d67c214044890c23a4d19df77168e8f4ff9",
    ),
    Seam(
        "processor_from_parts",
        "transformers.processing_utils:ProcessorMixin",
        "the processor config and chat template as from_pretrained reads them, and its final assembly",
        NO_HOOK,
        members=("get_attributes", "get_processor_dict", "from_args_and_dict"),
    ),
)

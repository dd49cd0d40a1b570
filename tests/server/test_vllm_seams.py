"""The contract between this server and the installed vLLM: every seam of ``server/runtime/vllm_seams.py`` checked
against
vLLM as installed, without an engine. An upgrade that moves, renames or changes what we touch fails here, with a
message naming the seam and what to change, instead of as a parity diff or a 500 far from its cause."""

from __future__ import annotations

import ast
import asyncio
import contextlib
import hashlib
import importlib
import inspect
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from starlette.types import ASGIApp

from server.runtime import vllm_seams
from server.runtime.app import VLLM_ROUTES_KEPT
from server.runtime.cli import build_parser
from server.runtime.vllm_seams import MODEL_SEAMS, SEAMS, STATE_ATTRIBUTES, Seam

SERVER_DIR = Path(vllm_seams.__file__).parent
# The routes vLLM 0.32's build_app makes for a generating model. keep_routes drops all but VLLM_ROUTES_KEPT, so a
# new route is harmless until someone keeps it; the list is here so an upgrade says what changed.
EXPECTED_VLLM_ROUTES = {
    "/detokenize", "/docs", "/docs/oauth2-redirect", "/generative_scoring", "/health", "/inference/v1/abort_requests",
    "/inference/v1/generate", "/invocations", "/is_scaling_elastic_ep", "/kv_event_sources", "/load", "/metrics",
    "/openapi.json", "/ping", "/redoc", "/scale_elastic_ep", "/tokenize", "/v1/chat/completions",
    "/v1/chat/completions/batch", "/v1/chat/completions/derender", "/v1/chat/completions/render", "/v1/completions",
    "/v1/completions/derender", "/v1/completions/render", "/v1/messages", "/v1/messages/count_tokens",
    "/v1/messages/render", "/v1/models", "/v1/responses", "/v1/responses/render", "/v1/responses/{response_id}",
    "/v1/responses/{response_id}/cancel", "/v1/systemone", "/version",
}  # fmt: skip
# vLLM modules server/ may import directly: vLLM's documented engine-args and platform APIs.
PUBLIC_VLLM_MODULES = ("vllm.engine.arg_utils", "vllm.platforms")
# Pokes at vLLM's objects that belong in vllm_seams.py only.
POKES = re.compile(r"router\.routes\s*=|lifespan_context\s*=|middleware_stack\s*=|MEDIA_CONNECTOR_REGISTRY")


def _resolve(target: str) -> Any:
    module, _, qualified = target.partition(":")
    found: Any = importlib.import_module(module)
    for part in filter(None, qualified.split(".")):
        found = getattr(found, part)
    return found


def _where(seam: Seam) -> str:
    return f"seam {seam.name} (server/runtime/vllm_seams.py) relies on vLLM's {seam.upstream}: {seam.why}"


def _digest(source: str) -> str:
    return hashlib.sha256(" ".join(source.split()).encode()).hexdigest()


def _has_member(found: Any, name: str) -> bool:
    fields = getattr(found, "model_fields", None) or {}  # pydantic models
    return hasattr(found, name) or name in fields or name in getattr(found, "__annotations__", {})


@pytest.mark.parametrize("seam", SEAMS + MODEL_SEAMS, ids=lambda seam: f"{seam.name}->{seam.upstream}")
def test_upstream_names_signatures_and_members(seam: Seam) -> None:
    try:
        found = _resolve(seam.upstream)
    except (ImportError, AttributeError) as exc:
        pytest.fail(
            f"{_where(seam)}; it is gone ({exc}). Find where vLLM moved it and update the seam, or replace the seam "
            f"with the upstream hook if one exists now ({seam.hook})."
        )
    if seam.parameters:
        names = tuple(name for name in inspect.signature(found).parameters if name != "self")
        assert names[: len(seam.parameters)] == seam.parameters, (
            f"{_where(seam)}; its parameters are now {names}, we call or override it as {seam.parameters}. "
            "Update the seam's calls (and Seam.parameters) to the new signature."
        )
    missing = [name for name in seam.members if not _has_member(found, name)]
    assert not missing, f"{_where(seam)}; it no longer has {missing}. Update the seam to what replaced them."
    if seam.source_sha256:
        now = _digest(inspect.getsource(found))
        assert now == seam.source_sha256, (
            f"{_where(seam)}; {seam.upstream} changed upstream, and {seam.name} copies or mirrors it step for step. "
            f"Compare its new source with ours, bring ours up to date, then set source_sha256 to {now!r}."
        )


def _vllm_app(tmp_path: Path) -> FastAPI:
    from vllm.entrypoints.launchers.app import build_app

    args = build_parser(environ={}).parse_args(["--model", str(tmp_path)])
    return build_app(args, ("generate",), None)


def test_build_app_makes_the_routes_we_expect_and_keep_routes_keeps_ours(tmp_path: Path) -> None:
    app = _vllm_app(tmp_path)
    made = {path for route in app.router.routes if (path := getattr(route, "path", None))}
    assert made >= VLLM_ROUTES_KEPT, (
        f"vLLM's build_app no longer makes {sorted(VLLM_ROUTES_KEPT - made)}, which this server keeps "
        "(server/runtime/app.py VLLM_ROUTES_KEPT): serve them ourselves or drop them from the product."
    )
    added, gone = sorted(made - EXPECTED_VLLM_ROUTES), sorted(EXPECTED_VLLM_ROUTES - made)
    assert not added and not gone, (
        f"vLLM's build_app now makes {added} and no longer {gone}. keep_routes (server/runtime/vllm_seams.py) "
        f"drops every "
        "route not in server/runtime/app.py VLLM_ROUTES_KEPT: decide whether a new one belongs to this product, then "
        "update EXPECTED_VLLM_ROUTES here."
    )
    vllm_seams.keep_routes(app, VLLM_ROUTES_KEPT)
    assert {getattr(route, "path", None) for route in app.router.routes} == VLLM_ROUTES_KEPT


def test_our_lifespan_runs_inside_vllms(tmp_path: Path) -> None:
    app = _vllm_app(tmp_path)
    app.state.log_stats = False  # what init_app_state sets from --disable-log-stats; vLLM's lifespan reads it
    events: list[str] = []

    @contextlib.asynccontextmanager
    async def resources(_: FastAPI) -> AsyncIterator[None]:
        events.append("ours up")
        yield
        events.append("ours down")

    vllm_seams.wrap_lifespan(app, resources)

    async def run() -> None:
        async with app.router.lifespan_context(app):
            events.append("serving")

    asyncio.run(run())
    assert events == ["ours up", "serving", "ours down"], (
        f"wrap_lifespan (server/runtime/vllm_seams.py) no longer runs our resources inside vLLM's lifespan: {events}"
    )


class _Tag:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app


def test_middleware_can_be_added_after_the_seam_and_not_before(tmp_path: Path) -> None:
    app = _vllm_app(tmp_path)
    try:
        app.add_middleware(_Tag)
    except RuntimeError:
        pass  # the reason for allow_more_middleware: vLLM built the stack already
    else:
        pytest.fail(
            "vLLM's build_app no longer builds the middleware stack: allow_more_middleware "
            "(server/runtime/vllm_seams.py) "
            "can go, with its call in server/runtime/app.py add_our_middleware."
        )
    vllm_seams.allow_more_middleware(app)
    app.add_middleware(_Tag)
    assert any(middleware.cls is _Tag for middleware in app.user_middleware)


@pytest.mark.parametrize("attribute", STATE_ATTRIBUTES)
def test_vllm_sets_the_app_state_our_routes_read(attribute: str) -> None:
    import vllm.entrypoints

    assignment = re.compile(rf"\bstate\.{attribute}\s*=")
    root = Path(vllm.entrypoints.__file__).parent
    setters = [path for path in root.rglob("*.py") if assignment.search(path.read_text(errors="replace"))]
    assert setters, (
        f"no module of vllm.entrypoints sets app.state.{attribute} any more; chat_serving / engine_client / "
        "serve_args (server/runtime/vllm_seams.py) read it. Find where vLLM keeps it now and update the accessor."
    )


def test_our_media_connector_is_what_vllm_loads() -> None:
    from vllm.multimodal.media import MediaConnector

    original = vllm_seams.media_connector_class()

    class Probe(MediaConnector):
        pass

    try:
        vllm_seams.register_media_connector(Probe)
        assert vllm_seams.media_connector_class() is Probe
    finally:
        vllm_seams.register_media_connector(original)
    import vllm.renderers.chat_utils as renderer

    source = inspect.getsource(renderer)
    assert "MEDIA_CONNECTOR_REGISTRY.load(" in source and "VLLM_MEDIA_CONNECTOR" in source, (
        "vLLM's chat renderer no longer loads its media connector by VLLM_MEDIA_CONNECTOR from the registry: "
        "register_media_connector (server/runtime/vllm_seams.py) would change nothing and videos would skip our store. "
        "Find the new way the renderer picks its connector."
    )


@pytest.mark.parametrize("hook", ["_process_video_input", "_process_image_input"])
def test_the_model_overrides_match_and_are_still_called(hook: str) -> None:
    from vllm.model_executor.models.qwen2_5_vl import Qwen2_5_VLForConditionalGeneration as Qwen

    from model_plugin.vllm_base import SpatialQwen2_5_VL

    ours = list(inspect.signature(getattr(SpatialQwen2_5_VL, hook)).parameters)
    theirs = list(inspect.signature(getattr(Qwen, hook)).parameters)
    assert ours == theirs, (
        f"vLLM's Qwen2_5_VLForConditionalGeneration.{hook} now takes {theirs}; our override in "
        f"model_plugin/vllm_base.py takes {ours}. Follow the new signature."
    )
    assert f"self.{hook}(" in inspect.getsource(Qwen.embed_multimodal), (
        f"vLLM's Qwen2.5-VL embed_multimodal no longer calls {hook}: our override in model_plugin/vllm_base.py "
        "would be skipped and answers would silently lose the spatial encoder. Move the fusion to the new hook."
    )


def test_server_imports_vllm_only_through_the_seams() -> None:
    offenders = []
    for path in sorted(SERVER_DIR.glob("*.py")):
        if path.name == "vllm_seams.py":
            continue
        text = path.read_text()
        for node in ast.walk(ast.parse(text)):
            names = (
                [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else [alias.name for alias in node.names]
                if isinstance(node, ast.Import)
                else []
            )
            for name in names:
                if name.split(".")[0] == "vllm" and not name.startswith(PUBLIC_VLLM_MODULES):
                    offenders.append(f"{path.name}:{node.lineno} imports {name}")
        offenders += [f"{path.name}: {match.group(0)!r}" for match in POKES.finditer(text)]
    assert not offenders, (
        f"{offenders}: touch vLLM's server internals in server/runtime/vllm_seams.py only (import the name from there, "
        "and add a Seam saying why and which upstream hook would replace it)."
    )


def test_the_options_we_read_are_vllms() -> None:
    args = build_parser(environ={}).parse_args(["--model", "m"])
    read = re.findall(r"\bargs\.([a-z0-9_]+)", "".join(p.read_text() for p in SERVER_DIR.glob("*.py")))
    ours = {"demo", "sample_video", "model_tag", "get"}  # ours (cli.py), or not an option (dict.get)
    missing = sorted({name for name in read if name not in ours and not hasattr(args, name)})
    assert not missing, f"vLLM's serve parser no longer has {missing}, which server/ reads from its parsed args"

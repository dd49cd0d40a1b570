"""``GET /health`` (liveness) and ``GET /ready`` (readiness), kept apart.

``/health`` is vLLM's meaning: the API process answers and the engine is alive (503 once it died), so a
liveness probe restarts the pod only when a restart can help. ``/ready`` adds what a request may also need: the
geometry worker of space-aware sampling. A worker that crashes and reloads (or keeps failing to) makes the
replica not ready, taking it out of the load balancer, but never not alive: the engine, and uniform questions,
keep going. While the engine loads, both answer 503 (the launcher's starting app).
"""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from server.errors import error_body
from server.runtime.vllm_seams import EngineDeadError, engine_client

router = APIRouter()
PartState = Literal["ready", "dead", "loading", "off"]


async def _engine_state(request: Request) -> PartState:
    try:
        await engine_client(request.app.state).check_health()
    except EngineDeadError:
        return "dead"
    return "ready"


def _geometry_state(request: Request) -> PartState:
    worker = request.app.state.preparer.geometry
    if worker is None:
        return "off"  # no VGGT weights: space-aware requests get a 400, nothing to wait for
    return "ready" if worker.ready else "loading"


@router.get("/health", response_class=Response)
async def health(raw_request: Request) -> Response:
    """Liveness: 200 while the engine is alive, whatever the geometry worker is doing."""
    return Response(status_code=200 if await _engine_state(raw_request) == "ready" else 503)


@router.get("/ready")
async def ready(raw_request: Request) -> JSONResponse:
    """Readiness: 200 when the engine and the geometry worker both serve; otherwise 503 (OpenAI's error shape,
    plus ``parts``) saying which part is not ready."""
    parts = {"engine": await _engine_state(raw_request), "geometry_worker": _geometry_state(raw_request)}
    waiting = [name for name, state in parts.items() if state not in ("ready", "off")]
    if not waiting:
        return JSONResponse({"status": "ready", "parts": parts})
    described = {
        "engine": "the model engine is not running",
        "geometry_worker": "the space-aware sampling worker is (re)loading",
    }
    message = "Not ready: " + "; ".join(described[name] for name in waiting) + "."
    headers = {"Retry-After": str(raw_request.app.state.settings.retry_after_s)}
    return JSONResponse({**error_body(503, message), "parts": parts}, status_code=503, headers=headers)

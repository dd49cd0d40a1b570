"""``GET /health``: vLLM's engine check plus the geometry worker of space-aware sampling.

503 while the engine is dead or while the geometry worker is down (e.g. reloading after a crash), so probes and
load balancers see what a request would meet.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response
from vllm.v1.engine.exceptions import EngineDeadError

router = APIRouter()


@router.get("/health", response_class=Response)
async def health(raw_request: Request) -> Response:
    state = raw_request.app.state
    try:
        await state.engine_client.check_health()
    except EngineDeadError:
        return Response(status_code=503)
    geometry = state.preparer.geometry
    return Response(status_code=200 if geometry is None or geometry.ready else 503)

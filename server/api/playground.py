"""``GET /playground``: a page to try the model in a browser (drop a video, see the frames, ask, watch it stream).

Plain HTML, CSS and JavaScript shipped inside the package (no build step, no CDN: it works on an air-gapped node).
The page only talks to the public API (``/v1/files``, ``/v1/files/{id}/frames``, ``/v1/chat/completions``), so
it shows errors exactly as the API words them. The page, its script and style and ``config.json`` hold no data
and need no key even when API keys are set; its API calls carry the key typed on the page (or given once as
``?key=``, which the page moves into the tab's storage), as any API client's do.
"""

from __future__ import annotations

from importlib.resources import files

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

ASSETS = files("server.api") / "playground_assets"
MEDIA_TYPES = {"app.js": "text/javascript", "style.css": "text/css"}
# no inline script or style, nothing fetched from elsewhere; thumbnails arrive as data: URLs
POLICY = "default-src 'self'; img-src 'self' data: blob:; media-src 'self' blob:; frame-ancestors 'none'"
HEADERS = {"Content-Security-Policy": POLICY, "Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"}
# A text model this narrow is a toy (the demo's and the tests' tiny random-weight checkpoint: hidden size 64);
# the smallest real Qwen2.5 has 896.
TOY_HIDDEN_SIZE = 256
TOY_MAX_TOKENS = 16  # a toy's answers are noise: a few tokens show streaming without filling the page
MAX_TOKENS = 256

router = APIRouter(include_in_schema=False)


def _asset(name: str, media_type: str) -> Response:
    return Response((ASSETS / name).read_bytes(), media_type=media_type, headers=HEADERS)


def is_toy_model(model_config: object) -> bool:
    """Whether the served model is a toy whose answers are gibberish by design (the ``--demo`` model)."""
    text_config = getattr(model_config, "hf_text_config", None)
    hidden_size = getattr(text_config, "hidden_size", None)
    return isinstance(hidden_size, int) and hidden_size < TOY_HIDDEN_SIZE


@router.get("/playground")
async def page() -> Response:
    return _asset("index.html", "text/html; charset=utf-8")


@router.get("/playground/config.json")
async def config(request: Request) -> JSONResponse:
    """What the page shows before any key is typed: whether the model is a toy, and the answer length to offer."""
    toy = is_toy_model(request.app.state.engine_client.model_config)
    body = {"toy_model": toy, "max_tokens": TOY_MAX_TOKENS if toy else MAX_TOKENS}
    return JSONResponse(body, headers=HEADERS)


@router.get("/playground/{name}")
async def asset(name: str) -> Response:
    media_type = MEDIA_TYPES.get(name)
    if media_type is None:
        return Response(status_code=404)
    return _asset(name, media_type + "; charset=utf-8")

"""``GET /playground``: a page to try the model in a browser (drop a video, see the frames, ask, watch it stream).

Plain HTML, CSS and JavaScript shipped inside the package (no build step, no CDN: it works on an air-gapped node).
The page only talks to the public API (``/v1/files``, ``/v1/files/{id}/frames``, ``/v1/chat/completions``), so
it shows errors exactly as the API words them. With API keys set, the page itself needs one (``?key=``, checked by
:class:`server.middleware.APIKeys`); its script and style are static code and carry no data.
"""

from __future__ import annotations

from importlib.resources import files

from fastapi import APIRouter
from fastapi.responses import Response

ASSETS = files("server") / "playground_assets"
MEDIA_TYPES = {"app.js": "text/javascript", "style.css": "text/css"}
# no inline script or style, nothing fetched from elsewhere; thumbnails arrive as data: URLs
POLICY = "default-src 'self'; img-src 'self' data: blob:; media-src 'self' blob:; frame-ancestors 'none'"

router = APIRouter(include_in_schema=False)


def _asset(name: str, media_type: str) -> Response:
    headers = {"Content-Security-Policy": POLICY, "Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"}
    return Response((ASSETS / name).read_bytes(), media_type=media_type, headers=headers)


@router.get("/playground")
async def page() -> Response:
    return _asset("index.html", "text/html; charset=utf-8")


@router.get("/playground/{name}")
async def asset(name: str) -> Response:
    media_type = MEDIA_TYPES.get(name)
    if media_type is None:
        return Response(status_code=404)
    return _asset(name, media_type + "; charset=utf-8")

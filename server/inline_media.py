"""Large JSON chat bodies are parsed off the event loop, and their inline videos decoded there once.

FastAPI parses and validates a JSON body on the event loop: for a body carrying a data-URL video (tens of MB of
base64) that stalls every other request's stream, and the body, the parsed string and the decoded bytes all
live at once. This ASGI middleware reads a large ``/v1/chat/completions`` body itself, and in a worker thread
parses it, decodes each video ``data:`` URL (type and size checked as :func:`server.media.parse_data_url`
does) and puts a short per-request reference in its place, then hands the now small body on. The route resolves
the reference from the request's state (:data:`INLINE_STATE`), so the video's bytes exist once, decoded, and
FastAPI validates a few kilobytes. A data URL that does not decode is left as it is, for the route to refuse
with its usual error; a body that is not JSON passes unchanged.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server.errors import APIError
from server.middleware import route_path

INLINE_STATE = "inline_videos"
INLINE_PREFIX = "inline-video-"
CHAT_PATH = "/v1/chat/completions"


def _extract_videos(body: bytes, max_video_bytes: int) -> tuple[bytes, dict[str, bytes]] | None:
    """(smaller body, {reference: video bytes}), or None when nothing was taken out (leave the body alone)."""
    from server.media import inline_video_bytes  # server.media imports the app's heavier modules

    try:
        payload = json.loads(body)
    except ValueError:
        return None
    messages = payload.get("messages") if isinstance(payload, dict) else None
    if not isinstance(messages, list):
        return None
    videos: dict[str, bytes] = {}
    for message in messages:
        content = message.get("content") if isinstance(message, dict) else None
        for part in content if isinstance(content, list) else ():
            ref = part.get("video_url") if isinstance(part, dict) and part.get("type") == "video_url" else None
            url = ref.get("url") if isinstance(ref, dict) else None
            if not isinstance(url, str) or url[:5].lower() != "data:":
                continue
            try:
                data = inline_video_bytes(url, max_video_bytes)
            except APIError:
                continue  # the route refuses it with the field named
            reference = INLINE_PREFIX + secrets.token_hex(8)
            videos[reference] = data
            ref["url"] = reference
    if not videos:
        return None
    return json.dumps(payload, separators=(",", ":")).encode(), videos


class InlineMedia:
    """Off-loop parsing of chat bodies over ``min_bytes``; smaller ones go to FastAPI untouched."""

    def __init__(self, app: ASGIApp, max_video_bytes: int, min_bytes: int = 1 << 20) -> None:
        self.app = app
        self.max_video_bytes = max_video_bytes
        self.min_bytes = min_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") != "POST" or route_path(scope) != CHAT_PATH:
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        more = True
        while more and size < self.min_bytes:  # small bodies: read what is there and pass it on as it was
            message = await receive()
            if message["type"] != "http.request":
                await self.app(scope, _replay([], message, receive), send)
                return
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            more = message.get("more_body", False)
        if size >= self.min_bytes:
            while more:
                message = await receive()
                if message["type"] != "http.request":
                    await self.app(scope, _replay([], message, receive), send)
                    return
                chunks.append(message.get("body", b""))
                more = message.get("more_body", False)
            body = b"".join(chunks)
            chunks.clear()
            extracted = await asyncio.to_thread(_extract_videos, body, self.max_video_bytes)
            if extracted is not None:
                body, videos = extracted
                scope.setdefault("state", {})[INLINE_STATE] = videos
            chunks = [body]
        await self.app(scope, _replay(chunks, None, receive), send)


def _replay(chunks: list[bytes], pending: Message | None, receive: Receive) -> Receive:
    """A ``receive`` that first gives the body already read (as one message), then the real channel's messages."""
    queue: list[Message] = []
    if chunks:
        queue.append({"type": "http.request", "body": b"".join(chunks), "more_body": False})
    if pending is not None:
        queue.append(pending)

    async def replayed() -> Message:
        if queue:
            return queue.pop(0)
        return await receive()

    return replayed


def inline_videos(scope_state: Any) -> dict[str, bytes]:
    """The videos this request's body carried inline, by reference (empty when none were taken out)."""
    return getattr(scope_state, INLINE_STATE, None) or {}

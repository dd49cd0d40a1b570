"""Large JSON chat bodies are parsed off the event loop, and their inline videos decoded there once.

FastAPI parses and validates a JSON body on the event loop: for a body carrying a data-URL video (tens of MB of
base64) that stalls every other request's stream, and the body, the parsed string and the decoded bytes all
live at once. This ASGI middleware reads a large ``/v1/chat/completions`` body itself and, in a worker thread, cuts the
long ``data:`` strings out with ``bytes.find`` (so the JSON parser only sees a few kilobytes), decodes each
video data URL a few MB at a time (:func:`server.media.resolve.parse_data_url`; C calls that hold the GIL stay short, so
the event loop keeps running) and puts a short per-request reference in its place, then hands the small body
on. The route resolves the reference from the request's state (:data:`INLINE_STATE`), so the video's bytes
exist once, decoded, and FastAPI validates a few kilobytes. A video data URL the route would refuse is
answered here with the same error and field; anything unusual (not JSON, escapes inside a data URL) passes
unchanged to the ordinary parser.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server.api.middleware import route_path
from server.errors import APIError, error_response

INLINE_STATE = "inline_videos"
INLINE_PREFIX = "inline-video-"
CHAT_PATH = "/v1/chat/completions"


MIN_SPAN = 64 << 10  # data URLs shorter than this stay in the JSON (parsing them costs nothing)


class RefusedVideo(Exception):
    """A video data URL the route would refuse: answered at once, naming its field."""

    def __init__(self, error: APIError) -> None:
        self.error = error


def _cut_data_urls(body: bytearray, token: str) -> tuple[bytes, list[tuple[int, int]]] | None:
    """(body with each long ``"data:..."`` string replaced by ``"<token><k>"``, the spans cut out), or None when a
    span holds an escape (rare, e.g. ``\\/``: the body is then left to the ordinary parser). Finding the strings
    is a few ``bytes.find`` calls, so nothing long holds the GIL."""
    spans: list[tuple[int, int]] = []
    pieces: list[bytes] = []
    done = position = 0
    while (start := body.find(b'"data:', position)) != -1:
        end = body.find(b'"', start + 1)
        if end == -1:
            break
        position = end + 1
        if end - start < MIN_SPAN or (start > 0 and body[start - 1] == 0x5C):  # short, or inside another string
            continue
        if body.find(b"\\", start, end) != -1:
            return None
        pieces += [body[done : start + 1], f"{token}{len(spans)}".encode()]
        spans.append((start + 1, end))
        done = end
    if not spans:
        return None
    pieces.append(body[done:])
    return b"".join(pieces), spans


def _restore(value: Any, originals: dict[str, str]) -> Any:
    """``value`` with every placeholder left (a data URL that was not a video part) put back as it was."""
    if isinstance(value, str):
        return originals.get(value, value)
    if isinstance(value, list):
        return [_restore(item, originals) for item in value]
    if isinstance(value, dict):
        return {_restore(key, originals): _restore(item, originals) for key, item in value.items()}
    return value


def _extract_videos(body: bytearray, max_video_bytes: int) -> tuple[bytes, dict[str, bytearray]] | None:
    """(smaller body, {reference: video bytes}), or None to leave the body as it is. Raises :class:`RefusedVideo`
    for a video data URL the route would refuse (wrong type, too large, bad base64)."""
    from server.media.resolve import inline_video_bytes  # server.media.resolve imports the app's heavier modules

    token = f"{INLINE_PREFIX}{secrets.token_hex(8)}-"
    cut = _cut_data_urls(body, token)
    if cut is None:
        return None
    small, spans = cut
    try:
        payload = json.loads(small)
    except ValueError:
        return None
    messages = payload.get("messages") if isinstance(payload, dict) else None
    videos: dict[str, bytearray] = {}
    view = memoryview(body)
    for m, message in enumerate(messages if isinstance(messages, list) else ()):
        content = message.get("content") if isinstance(message, dict) else None
        for p, part in enumerate(content if isinstance(content, list) else ()):
            ref = part.get("video_url") if isinstance(part, dict) and part.get("type") == "video_url" else None
            url = ref.get("url") if isinstance(ref, dict) else None
            if not isinstance(url, str) or not url.startswith(token):
                continue
            start, end = spans[int(url[len(token) :])]
            param = f"messages[{m}].content[{p}].video_url"
            try:
                videos[url] = inline_video_bytes(view[start:end], max_video_bytes, param)
            except APIError as exc:
                raise RefusedVideo(exc) from exc
    originals = {  # only the strings that go back (decoding a video's would be one long GIL-holding copy)
        f"{token}{k}": body[start:end].decode() for k, (start, end) in enumerate(spans) if f"{token}{k}" not in videos
    }
    if originals:
        payload = _restore(payload, originals)
    return json.dumps(payload, separators=(",", ":")).encode(), videos


def _extract_joined(chunks: list[bytes], max_video_bytes: int) -> tuple[bytes, dict[str, bytearray]]:
    """The body from its chunks (copied chunk by chunk: one big copy would hold the GIL for its whole length),
    with its videos taken out where :func:`_extract_videos` can."""
    body = bytearray(sum(map(len, chunks)))
    filled = 0
    while chunks:
        chunk = chunks.pop(0)
        body[filled : filled + len(chunk)] = chunk
        filled += len(chunk)
    extracted = _extract_videos(body, max_video_bytes)
    return extracted if extracted is not None else (bytes(body), {})


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
            try:  # joining tens of MB is a long copy too: done in the thread
                extracted = await asyncio.to_thread(_extract_joined, chunks, self.max_video_bytes)
            except RefusedVideo as refused:
                error = refused.error
                await error_response(error.status, error.message, error.param)(scope, _replay([], None, receive), send)
                return
            body, videos = extracted
            if videos:
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

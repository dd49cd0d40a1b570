"""ASGI middleware of our layer: request ids with structured logs, API keys, body caps and admission control.

All of it is plain ASGI (no ``BaseHTTPMiddleware``), so streaming responses pass through untouched and a
client disconnect still reaches vLLM's handlers.
"""

from __future__ import annotations

import contextvars
import hashlib
import json
import logging
import secrets
import time
import uuid
from collections.abc import Iterable

from starlette.datastructures import Headers, MutableHeaders
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server.errors import error_response
from server.metrics import REJECTED, REQUESTS

REQUEST_ID = contextvars.ContextVar("request_id", default="-")
ACCESS_LOG = logging.getLogger("spatial_mllm_serve.access")
GUARDED_PREFIX = "/v1/"
ADMITTED_PATHS = ("/v1/chat/completions", "/v1/video/chat", "/v1/files")


def route_path(scope: Scope) -> str:
    """The path the router matches (``--root-path`` removed), so checks see what routing sees."""
    return scope["path"].removeprefix(scope.get("root_path", "") or "")


def _route_label(scope: Scope) -> str:
    route = scope.get("route")
    return getattr(route, "path", None) or "unmatched"


class RequestContext:
    """A request id per request (the client's ``X-Request-Id`` if sane, else a fresh one), echoed in the
    response header and carried by a context variable into logs; one JSON access-log line per request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = Headers(scope=scope).get("x-request-id", "")
        request_id = given if 0 < len(given) <= 128 and given.isascii() and given.isprintable() else uuid.uuid4().hex
        token = REQUEST_ID.set(request_id)
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                MutableHeaders(scope=message).append("X-Request-Id", request_id)
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            REQUESTS.labels(_route_label(scope), str(status)).inc()
            ACCESS_LOG.info(
                json.dumps(
                    {
                        "request_id": request_id,
                        "method": scope.get("method"),
                        "path": scope.get("path"),
                        "status": status,
                        "ms": round((time.perf_counter() - started) * 1000, 1),
                    }
                )
            )
            REQUEST_ID.reset(token)


OWNER_STATE = "file_owner"


def file_owner(request: Request) -> str:
    """The uploads namespace of the caller: its API key's digest, or "" (one shared namespace) without keys."""
    return getattr(request.state, OWNER_STATE, "")


class APIKeys:
    """``Authorization: Bearer <key>`` on ``/v1/*`` (only there: pages such as ``/playground`` hold no data and send
    the key their user types with each API call); any of several keys, compared in constant time on digests
    (so neither the key's content nor its length leaks through timing). Keys are never logged.

    With ``per_minute`` > 0 each key also gets a token bucket of that many requests per minute (bursts up to
    the same number); past it the answer is 429 with ``Retry-After``.
    """

    def __init__(self, app: ASGIApp, keys: Iterable[str], per_minute: int = 0) -> None:
        self.app = app
        self.digests = [hashlib.sha256(key.encode()).digest() for key in keys]
        self.per_minute = per_minute
        self.buckets: dict[bytes, tuple[float, float]] = {}  # digest -> (tokens, last refill time)

    def _match(self, headers: Headers) -> bytes | None:
        scheme, _, token = headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            return None
        return self._match_token(token)

    def _match_token(self, token: str) -> bytes | None:
        digest = hashlib.sha256(token.strip().encode()).digest()
        matched = None
        for expected in self.digests:
            if secrets.compare_digest(digest, expected):
                matched = expected
        return matched

    def _retry_after(self, digest: bytes) -> int | None:
        """Seconds until the key may send again, or None when a token was taken."""
        now = time.monotonic()
        rate = self.per_minute / 60.0
        tokens, last = self.buckets.get(digest, (float(self.per_minute), now))
        tokens = min(float(self.per_minute), tokens + (now - last) * rate)
        if tokens < 1.0:
            self.buckets[digest] = (tokens, now)
            return max(1, int((1.0 - tokens) / rate + 0.999))
        self.buckets[digest] = (tokens - 1.0, now)
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        guarded = (
            scope["type"] == "http"
            and self.digests
            and scope.get("method") != "OPTIONS"
            and route_path(scope).startswith(GUARDED_PREFIX)
        )
        if guarded:
            digest = self._match(Headers(scope=scope))
            if digest is None:
                response = error_response(401, "Invalid or missing API key (send 'Authorization: Bearer <key>').")
                response.headers["WWW-Authenticate"] = "Bearer"
                await response(scope, receive, send)
                return
            # Who owns what this request uploads: a short digest of the key (never the key), for the file store.
            scope.setdefault("state", {})[OWNER_STATE] = digest.hex()[:32]
            wait = self._retry_after(digest) if self.per_minute > 0 else None
            if wait is not None:
                REJECTED.labels("key_quota").inc()
                await error_response(429, "This API key is over its request quota.", retry_after=wait)(
                    scope, receive, send
                )
                return
        await self.app(scope, receive, send)


JSON_PATHS = ("/v1/chat/completions",)


class BodyLimit:
    """Refuses bodies over their cap with a 413, from ``Content-Length`` before reading anything, or while
    streaming when the client sends chunked data; nothing past the cap is buffered.

    JSON routes get ``json_max_bytes`` (a data-URL video held in memory, parsed): bounded per request by
    construction; multipart uploads get ``max_bytes``. The JSON 413 says where larger videos go."""

    def __init__(self, app: ASGIApp, max_bytes: int, json_max_bytes: int | None = None) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.json_max_bytes = max_bytes if json_max_bytes is None else json_max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length")
        if route_path(scope) in JSON_PATHS:
            cap = self.json_max_bytes
            too_large = error_response(
                413,
                f"The request body exceeds the limit of {cap} bytes for JSON; upload larger videos with "
                "POST /v1/files and refer to them by file id.",
            )
        else:
            cap = self.max_bytes
            too_large = error_response(413, f"The request body exceeds the limit of {cap} bytes.")
        if declared is not None and declared.isdigit() and int(declared) > cap:
            await too_large(scope, receive, send)
            return
        received = 0
        exceeded = answered = False

        async def counting_receive() -> Message:
            nonlocal received, exceeded
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > cap:
                    exceeded = True
                    raise _BodyTooLarge
            return message

        async def replacing_send(message: Message) -> None:
            # FastAPI turns any error while reading the body into its own 400; once the cap was crossed, the
            # client gets the 413 it should, whatever the app made of the interrupted read.
            nonlocal answered
            if exceeded:
                if message["type"] == "http.response.start" and not answered:
                    answered = True
                    await too_large(scope, receive, send)
                return
            await send(message)

        try:
            await self.app(scope, counting_receive, replacing_send)
        except _BodyTooLarge:
            if not answered:
                await too_large(scope, receive, send)


class _BodyTooLarge(Exception):
    pass


class Admission:
    """A bounded number of generation requests in flight; the excess is answered at once with 503 and
    ``Retry-After`` instead of queueing without bound (clients and load balancers retry elsewhere)."""

    def __init__(self, app: ASGIApp, max_in_flight: int, retry_after_s: int) -> None:
        self.app = app
        self.max_in_flight = max_in_flight
        self.retry_after_s = retry_after_s
        self.in_flight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") != "POST" or route_path(scope) not in ADMITTED_PATHS:
            await self.app(scope, receive, send)
            return
        if self.in_flight >= self.max_in_flight:
            REJECTED.labels("busy").inc()
            busy = error_response(503, "The server is at capacity; retry shortly.", retry_after=self.retry_after_s)
            await busy(scope, receive, send)
            return
        self.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1

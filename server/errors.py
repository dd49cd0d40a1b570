"""Errors in OpenAI's shape, ``{"error": {"message", "type", "param", "code"}}``, built on vLLM's own models.

Every route of ours raises :class:`APIError` (or a :class:`sampling.errors.VideoError`) and the handlers here
turn it into the same JSON vLLM's routes answer with, so a client sees one error format whichever room of the
server answered. ``code`` is the HTTP status, as vLLM writes it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse

from sampling.errors import VideoError
from server.runtime.vllm_seams import ErrorInfo, ErrorResponse

ERROR_TYPES = {
    400: "BadRequestError",
    401: "AuthenticationError",
    403: "PermissionDeniedError",
    404: "NotFoundError",
    405: "MethodNotAllowedError",
    409: "ConflictError",
    413: "RequestTooLargeError",
    415: "UnsupportedMediaTypeError",
    422: "UnprocessableEntityError",
    429: "RateLimitError",
    500: "InternalServerError",
    502: "BadGatewayError",
    503: "ServiceUnavailableError",
    504: "GatewayTimeoutError",
    507: "InsufficientStorageError",
}


def error_type(status: int) -> str:
    """OpenAI's ``type`` for a status: a name like OpenAI's error classes, never a bare HTTP phrase."""
    return ERROR_TYPES.get(status) or ("InternalServerError" if status >= 500 else "BadRequestError")


class APIError(Exception):
    """A client-visible failure with its HTTP status; ``retry_after`` (seconds) adds a ``Retry-After`` header."""

    def __init__(self, status: int, message: str, param: str | None = None, retry_after: int | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.retry_after = retry_after


@contextlib.contextmanager
def naming(param: str) -> Iterator[None]:
    """Video errors raised inside become :class:`APIError` naming ``param``, the request field that held the video
    (one decode may serve several requests, each with its own field)."""
    try:
        yield
    except VideoError as exc:
        raise APIError(exc.status, str(exc), param) from exc


UNRECOGNIZED = "Unrecognized request argument supplied: {param}."


def unrecognized_field(param: str, hint: str = "") -> APIError:
    """The one refusal of a field no schema defines, on every route (OpenAI's wording, 400, ``param`` its path):
    a misspelt option must never be ignored into a default answer."""
    return APIError(400, UNRECOGNIZED.format(param=param) + (f" {hint}" if hint else ""), param)


def _unrecognized_hint(param: str) -> str:
    if param.startswith("guided_"):  # vLLM dropped these and only logs a warning; the output would be unconstrained
        return "vLLM removed the guided_* fields: use structured_outputs (or response_format)."
    return ""


def error_body(status: int, message: str, param: str | None = None) -> dict:
    """One error in OpenAI's shape, as JSON-ready data."""
    info = ErrorInfo(message=message, type=error_type(status), param=param, code=status)
    return ErrorResponse(error=info).model_dump()


def error_response(status: int, message: str, param: str | None = None, retry_after: int | None = None) -> JSONResponse:
    """The JSON response for one error, in OpenAI's shape."""
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
    return JSONResponse(error_body(status, message, param), status_code=status, headers=headers)


async def _api_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, APIError)
    return error_response(exc.status, exc.message, exc.param, exc.retry_after)


async def _video_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, VideoError)
    return error_response(exc.status, str(exc), getattr(exc, "param", None))


async def _http_error(_: Request, exc: Exception) -> JSONResponse:
    """Starlette's own HTTP errors (unknown route, wrong method) in OpenAI's shape."""
    assert isinstance(exc, StarletteHTTPException)
    status = exc.status_code
    message = "No such route." if status == 404 else str(exc.detail)
    return error_response(status, message)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    """Malformed JSON is a 400, so is a field no schema defines (:func:`unrecognized_field`); well-formed JSON that
    breaks the schema otherwise is a 422 naming the field."""
    assert isinstance(exc, RequestValidationError)
    errors = list(exc.errors())
    if errors and isinstance(errors[0], str):  # vLLM's own checks raise plain messages (e.g. the content type)
        json_body = request.headers.get("content-type", "").lower().startswith("application/json")
        return error_response(400 if json_body else 415, errors[0][:500])
    if any(err.get("type") == "json_invalid" for err in errors):
        return error_response(400, "The request body is not valid JSON.")
    unknown = next((err for err in errors if err.get("type") == "extra_forbidden"), None)
    if unknown is not None:  # reported first, as OpenAI does: the other errors may be the misspelling's effect
        param = ".".join(str(part) for part in unknown.get("loc", ()) if part != "body")
        refusal = unrecognized_field(param, _unrecognized_hint(param))
        return error_response(refusal.status, refusal.message, refusal.param)
    first = errors[0] if errors else {}
    loc = [str(part) for part in first.get("loc", ()) if part != "body"]
    param = ".".join(loc) or None
    message = str(first.get("msg", "invalid request"))[:500]
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return error_response(422, f"{param}: {message}{more}" if param else message + more, param)


def install_error_handlers(app: FastAPI) -> None:
    """Map our exceptions (and request-schema failures) onto OpenAI-shaped responses."""
    app.add_exception_handler(APIError, _api_error)
    app.add_exception_handler(VideoError, _video_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)

"""``POST /v1/chat/completions``: our video handling in front of vLLM's own chat serving.

The route validates the request (vLLM's model plus ``video_sampling``), turns every video part into frames
sampled under the server's caps (:mod:`server.media.resolve`), then hands the rewritten request to vLLM's
``OpenAIServingChat``, which does everything OpenAI's protocol asks (streaming, usage, logprobs, ``n``, stop
strings, seeds) and aborts the engine request when the client goes away. Answers about videos say which frames
the model was shown (``video_frames``, below).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from http import HTTPStatus
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, StreamingResponse

from server.api.middleware import file_owner
from server.api.protocol import SpatialChatCompletionRequest
from server.api.request_fields import strict_query
from server.errors import APIError
from server.media.inline_media import inline_videos
from server.media.vllm_media_options import apply_vllm_media_options
from server.runtime.vllm_seams import (
    ChatCompletionResponse,
    EngineDeadError,
    ErrorResponse,
    chat_serving,
    engine_client,
    serve_args,
    with_cancellation,
    with_sse_keep_alive,
)

router = APIRouter(dependencies=[Depends(strict_query)])  # unknown query parameters: 400
# Extension field of every answer about a video (the JSON response, and the first chunk of a stream): one entry
# per video in request order, {"strategy", "indices", "timestamps_s"[, "candidates"][, "requested_frames", "note"]}
# (the last two when space-aware sampling chose fewer frames than asked, its original's rule: sampling.short_videos).
# The openai SDK keeps unknown fields: ``reply.video_frames`` (or ``reply.model_extra["video_frames"]``) reads it.
FRAMES_FIELD = "video_frames"
ERROR_RESPONSES = {
    status.value: {"model": ErrorResponse}
    for status in (
        HTTPStatus.BAD_REQUEST,
        HTTPStatus.UNAUTHORIZED,
        HTTPStatus.NOT_FOUND,
        HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
        HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
        HTTPStatus.UNPROCESSABLE_ENTITY,
        HTTPStatus.SERVICE_UNAVAILABLE,
    )
}


async def serve_chat(request: SpatialChatCompletionRequest, raw_request: Request):
    """Prepare the request's videos, then let vLLM's chat serving answer (JSON, or SSE when streaming)."""
    state = raw_request.app.state
    if chat_serving(state) is None:
        raise APIError(400, "This deployment does not serve chat completions.")
    require_live_engine(raw_request)
    # Server-side caps must not be tunable per request: media options never reach vLLM from a client; vLLM's
    # frame count / fps options become ours (under the caps), any other is a 400.
    apply_vllm_media_options(request)
    spec = state.media.sampling_spec(request.video_sampling)
    owner = file_owner(raw_request)
    inline = inline_videos(raw_request.state)  # data-URL videos already decoded off the event loop
    merge = state.settings.images_as_video if request.images_as_video is None else request.images_as_video
    prepared = await state.media.rewrite_messages(
        request.messages, spec, state.max_videos_per_request, owner, inline, merge
    )
    return await answer(request, raw_request, prepared)


ENGINE_DOWN = "The model engine is not running; retry shortly (or on another replica)."


def require_live_engine(raw_request: Request) -> None:
    """503 with Retry-After, not vLLM's 500, once the engine has died: it is the server that is unavailable."""
    if engine_client(raw_request.app.state).errored:
        raise APIError(503, ENGINE_DOWN, retry_after=raw_request.app.state.settings.retry_after_s)


async def answer(request: SpatialChatCompletionRequest, raw_request: Request, prepared: list[str]):
    """vLLM's chat serving on a request whose videos are prepared references (released once rendered)."""
    state = raw_request.app.state
    engine_down = APIError(503, ENGINE_DOWN, retry_after=state.settings.retry_after_s)
    used = [video.used for video in map(state.prepared_videos.get, prepared) if video is not None]
    try:
        result = await chat_serving(state).create_chat_completion(request, raw_request)
    except EngineDeadError as exc:  # the engine died mid-request: the server is unavailable, not broken
        raise engine_down from exc
    finally:
        state.prepared_videos.release(prepared)  # rendering (which reads the frames) is done once this returns
    if isinstance(result, ErrorResponse):
        if result.error.code >= 500 and engine_client(state).errored:
            raise engine_down
        return JSONResponse(result.model_dump(), status_code=result.error.code)
    if isinstance(result, ChatCompletionResponse):
        body = result.model_dump()
        if used:
            body[FRAMES_FIELD] = used
        return JSONResponse(body)
    keep_alive = float(getattr(serve_args(state), "sse_keep_alive_interval", 0) or 0)
    stream = with_frames_in_first_chunk(result, used) if used else result
    return StreamingResponse(with_sse_keep_alive(stream, keep_alive), media_type="text/event-stream")


async def with_frames_in_first_chunk(stream: AsyncIterator[str], used: list[dict[str, Any]]) -> AsyncIterator[str]:
    """vLLM's SSE stream with ``video_frames`` added to its first chat-completion chunk."""
    injected = False
    async for event in stream:
        if not injected and event.startswith("data: {"):
            injected = True
            chunk = json.loads(event[len("data: ") :])
            if chunk.get("object") == "chat.completion.chunk":
                chunk[FRAMES_FIELD] = used
                event = f"data: {json.dumps(chunk, separators=(',', ':'))}\n\n"
        yield event


@router.post(
    "/v1/chat/completions",
    responses={HTTPStatus.OK.value: {"content": {"text/event-stream": {}}}, **ERROR_RESPONSES},
)
@with_cancellation
async def create_chat_completion(request: SpatialChatCompletionRequest, raw_request: Request):
    """OpenAI chat completions with video parts; ``video_sampling`` picks how frames are taken."""
    return await serve_chat(request, raw_request)

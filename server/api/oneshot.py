"""``POST /v1/video/chat``: one multipart request with a video and a question, for curl users.

``curl -F video=@room.mp4 -F question="How many chairs?" URL`` gets the same answer as the equivalent chat
completion; ``-F stream=true`` streams SSE; sampling fields are form fields too. A field the route does not take,
or one sent twice, is a 400 naming it (a typo such as ``num_frame`` must not silently fall back to defaults).
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, File, Form, Request, UploadFile

from sampling.cache import content_hash
from sampling.time_axis import TimeAxis
from server.api.chat import ERROR_RESPONSES, answer, require_live_engine
from server.api.files_api import read_upload, strict_form
from server.api.protocol import MIN_FRAMES, SpatialChatCompletionRequest, VideoSampling
from server.api.request_fields import strict_query
from server.errors import APIError
from server.metrics import UPLOAD_BYTES
from server.runtime.vllm_seams import with_cancellation

router = APIRouter(dependencies=[Depends(strict_query)])  # unknown query parameters: 400


@router.post("/v1/video/chat", responses=ERROR_RESPONSES, dependencies=[Depends(strict_form)])
@with_cancellation
async def video_chat(
    raw_request: Request,
    video: Annotated[UploadFile, File(description="the video file")],
    question: Annotated[str | None, Form(max_length=32_768)] = None,
    model: Annotated[str | None, Form()] = None,
    strategy: Annotated[Literal["uniform", "space_aware"] | None, Form()] = None,
    num_frames: Annotated[int | None, Form(ge=MIN_FRAMES)] = None,
    fps: Annotated[float | None, Form(gt=0)] = None,
    time_axis: Annotated[TimeAxis | None, Form()] = None,
    max_tokens: Annotated[int | None, Form(ge=1)] = None,
    temperature: Annotated[float | None, Form(ge=0)] = None,
    seed: Annotated[int | None, Form()] = None,
    stream: Annotated[bool, Form()] = False,
):
    """Answer ``question`` about ``video``: an OpenAI chat completion (or its SSE stream)."""
    state = raw_request.app.state
    if not question or not question.strip():  # FastAPI reads an empty form field as a missing one
        raise APIError(422, "question: send a non-empty question as a form field (-F question=...).", "question")
    require_live_engine(raw_request)
    requested = VideoSampling(strategy=strategy, num_frames=num_frames, fps=fps, time_axis=time_axis)
    spec = state.media.sampling_spec(requested, prefix="")
    data = await read_upload(video, state.settings.max_video_bytes, "video")
    UPLOAD_BYTES.labels("oneshot").inc(len(data))
    digest = await asyncio.to_thread(content_hash, data)
    prepared = state.prepared_videos.put(await state.preparer.prepare(data, digest, spec, "video"))
    try:
        request = SpatialChatCompletionRequest(
            model=model or state.served_model_name,
            messages=[
                {
                    "role": "user",
                    "content": [
                        {"type": "video_url", "video_url": {"url": prepared}},
                        {"type": "text", "text": question},
                    ],
                }
            ],
            max_tokens=max_tokens,
            temperature=temperature,
            seed=seed,
            stream=stream,
        )
    except ValueError as exc:
        state.prepared_videos.release([prepared])
        raise APIError(400, str(exc)) from exc
    return await answer(request, raw_request, [prepared])

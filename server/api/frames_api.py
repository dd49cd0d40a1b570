"""``POST /v1/files/{file_id}/frames``: which frames a sampling spec selects from an uploaded video.

The answer comes from the same preparer, spec and cache as chat (:mod:`server.media.resolve`,
:mod:`server.frames.video_prep`),
so a question asked afterwards with the same ``video_sampling`` reuses these frames instead of sampling again.
Each frame comes with its index, timestamp and a small JPEG thumbnail; for space-aware sampling the answer also
names the candidate frames the selection considered (the same candidates the sampler decodes).
"""

from __future__ import annotations

import asyncio
import base64
import io

import numpy as np
from fastapi import APIRouter, Depends, Request
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field

from sampling.geometry import candidate_indices
from server.api.middleware import file_owner
from server.api.protocol import VideoSampling
from server.api.request_fields import strict_query

JPEG_QUALITY = 80


class FramesRequest(BaseModel):
    """The sampling to show (the chat request's ``video_sampling``) and how tall thumbnails should be."""

    model_config = ConfigDict(extra="forbid")

    video_sampling: VideoSampling | None = None
    thumbnail_height: int = Field(96, ge=16, le=512, description="thumbnail height in pixels (width follows)")


class Frame(BaseModel):
    index: int
    timestamp_s: float | None = Field(description="seconds from the start (null when the video states no fps)")
    thumbnail: str = Field(description="a data: URL of a JPEG of the frame as the model sees it")


class FramesResponse(BaseModel):
    object: str = "video.frames"
    file_id: str
    strategy: str
    video_num_frames: int
    video_fps: float
    frames: list[Frame]
    candidates: list[int] = Field(description="frame indices space-aware selection chose from (empty for uniform)")
    requested_frames: int | None = Field(None, description="frames asked for, when fewer came back (space-aware)")
    note: str | None = Field(None, description="why fewer frames than asked came back (sampling.short_videos)")


def jpeg_data_url(pixels: np.ndarray, height: int) -> str:
    """A uint8 [H, W, 3] frame scaled to ``height`` pixels as a base64 JPEG data URL."""
    image = Image.fromarray(pixels)
    width = max(1, round(image.width * height / image.height))
    buffer = io.BytesIO()
    image.resize((width, height), Image.Resampling.BILINEAR).save(buffer, format="JPEG", quality=JPEG_QUALITY)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode()


router = APIRouter(dependencies=[Depends(strict_query)])  # unknown query parameters: 400


@router.post("/v1/files/{file_id}/frames", response_model=FramesResponse)
async def file_frames(file_id: str, body: FramesRequest, raw_request: Request) -> FramesResponse:
    """The frames chat would give the model for this file under ``video_sampling``, with thumbnails."""
    state = raw_request.app.state
    spec = state.media.sampling_spec(body.video_sampling)
    owner = file_owner(raw_request)
    stored = await asyncio.to_thread(state.files.get, file_id, owner)  # first: only a stored file id goes on
    prepared = await state.media.prepare_video(stored.id, "file_id", spec, owner)  # no read once prepared
    total = int((stored.video or {}).get("num_frames", 0))
    used = prepared.used  # the same ``video_frames`` entry a chat answer with this spec carries

    def thumbnails() -> list[str]:
        return [jpeg_data_url(frame, body.thumbnail_height) for frame in prepared.frames]

    images = await asyncio.to_thread(thumbnails)
    frames = [
        Frame(index=i, timestamp_s=t, thumbnail=image)
        for i, t, image in zip(used["indices"], used["timestamps_s"], images, strict=True)
    ]
    candidates = (
        [int(i) for i in candidate_indices(total, state.settings.space_aware_candidates)]
        if spec.strategy == "space_aware"
        else []
    )
    return FramesResponse(
        file_id=file_id,
        strategy=spec.strategy,
        video_num_frames=total,
        video_fps=float((stored.video or {}).get("fps", 0.0)),
        frames=frames,
        candidates=candidates,
        requested_frames=used.get("requested_frames"),
        note=used.get("note"),
    )

"""vLLM's per-request media options, read the way ``vllm serve`` clients (lmms-eval's ``pass_video_url``) send them.

``media_io_kwargs.video.num_frames`` and ``media_io_kwargs.video.fps`` become ``video_sampling.num_frames`` /
``video_sampling.fps`` (so the server's caps apply to them as to ours). Every other media option would let a client
change decoding or the processor behind the caps' back: it is refused with a 400 that names it, never dropped.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from server.api.protocol import SpatialChatCompletionRequest, VideoSampling
from server.errors import APIError

MAPPED_VIDEO_OPTIONS = ("num_frames", "fps")


def apply_vllm_media_options(request: SpatialChatCompletionRequest) -> None:
    """Fold ``media_io_kwargs.video`` into ``request.video_sampling``; 400 for any other media option."""
    if request.mm_processor_kwargs:
        param = f"mm_processor_kwargs.{next(iter(request.mm_processor_kwargs))}"
        raise APIError(400, "mm_processor_kwargs are not accepted: the server sets the processor.", param)
    options: dict[str, Any] = request.media_io_kwargs or {}
    request.media_io_kwargs = None
    request.mm_processor_kwargs = None
    for modality in options:
        if modality != "video":
            raise APIError(400, "Only media_io_kwargs.video is accepted.", f"media_io_kwargs.{modality}")
    video = options.get("video") or {}
    if not isinstance(video, dict):
        raise APIError(400, "media_io_kwargs.video must be an object.", "media_io_kwargs.video")
    for key in video:
        if key not in MAPPED_VIDEO_OPTIONS:
            message = f"media_io_kwargs.video.{key} is not accepted; only num_frames and fps are (or video_sampling)."
            raise APIError(400, message, f"media_io_kwargs.video.{key}")
    if not video:
        return
    current = request.video_sampling.model_dump(exclude_none=True) if request.video_sampling else {}
    for key, value in video.items():
        if key in current and current[key] != value:
            message = f"video_sampling.{key} and media_io_kwargs.video.{key} disagree."
            raise APIError(400, message, f"media_io_kwargs.video.{key}")
        current[key] = value
    try:
        request.video_sampling = VideoSampling(**current)
    except ValidationError as exc:
        error = exc.errors()[0]
        param = "media_io_kwargs.video." + ".".join(str(p) for p in error["loc"])
        raise APIError(400, f"{param}: {error['msg']}.", param) from exc

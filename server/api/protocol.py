"""Request and response models: vLLM's OpenAI protocol, extended by one body field for frame sampling.

Unknown fields are refused, never ignored (a misspelt ``video_samplng`` would otherwise answer with default
sampling): a chat request may carry what OpenAI's schema (the ``openai`` SDK's ``CompletionCreateParams``), vLLM's
``ChatCompletionRequest`` (its extra sampling options, ``chat_template_kwargs``, ...) or our extensions define;
anything else is a 400 naming the field (:func:`server.errors.unrecognized_field`).
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal, get_type_hints

from openai.types.chat import completion_create_params
from pydantic import BaseModel, ConfigDict, Field, model_validator

from sampling.decode import VideoInfo
from sampling.time_axis import TimeAxis
from sampling.uniform import FRAME_FACTOR, VIDEO_MIN_PIXELS
from server.runtime.vllm_seams import ChatCompletionRequest

MIN_FRAMES = FRAME_FACTOR  # frame counts are rounded to even (qwen-vl-utils), so 1 would become 0


class VideoSampling(BaseModel):
    """How frames are taken from each video of a request; unset fields take the server's defaults.

    ``num_frames`` and ``fps`` are alternatives (qwen-vl-utils' ``nframes`` / ``fps``); the server caps both.
    ``resized_height``/``resized_width`` (given together) fix every frame's size, rounded to multiples of 28 as
    qwen-vl-utils rounds them, instead of the ``max_pixels`` budget; the rounded size must fit the server's
    per-frame pixel cap.
    """

    model_config = ConfigDict(extra="forbid")

    strategy: Literal["uniform", "space_aware"] | None = None
    num_frames: int | None = Field(
        default=None,
        ge=MIN_FRAMES,
        description="frames per video, rounded to even. A video with fewer frames: uniform refuses (400, "
        "qwen-vl-utils' rule); space_aware uses at most every frame, never repeating one (the original's rule), "
        "and its video_frames entry says so (requested_frames, note)",
    )
    fps: float | None = Field(default=None, gt=0)
    max_pixels: int | None = Field(
        default=None,
        ge=VIDEO_MIN_PIXELS,
        description="per-frame pixel budget: at least the server's minimum per frame (128*28*28 by default), "
        "at most its cap",
    )
    resized_height: int | None = Field(default=None, ge=1, description="fixed frame height (with resized_width)")
    resized_width: int | None = Field(default=None, ge=1, description="fixed frame width (with resized_height)")
    time_axis: TimeAxis | None = Field(
        default=None,
        description="M-RoPE time positions: 'seed_exact' (the original's inference: 1.0 s per 2 frames, whatever "
        "the video) or 'real_fps' (the sampled frames' real timing); default: the server's --default-time-axis",
    )


def _openai_fields_vllm_ignores() -> frozenset[str]:
    """OpenAI chat-request fields that vLLM's model does not declare (``store``, ``metadata``, ``audio``, ...): valid
    OpenAI requests, which vLLM accepts and ignores; so do we."""
    openai_fields: set[str] = set()
    for params in (
        completion_create_params.CompletionCreateParamsNonStreaming,
        completion_create_params.CompletionCreateParamsStreaming,
    ):
        openai_fields.update(get_type_hints(params))
    vllm_fields = {alias for name, field in ChatCompletionRequest.model_fields.items() for alias in (name, field.alias)}
    return frozenset(openai_fields - vllm_fields)


class SpatialChatCompletionRequest(ChatCompletionRequest):
    """OpenAI's chat request as vLLM parses it, plus ``video_sampling`` (send it as ``extra_body`` from the SDK).

    Unlike vLLM's (which logs unknown fields at debug level and drops them), a field nobody defines is refused."""

    model_config = ConfigDict(extra="forbid")
    openai_fields_ignored: ClassVar[frozenset[str]] = _openai_fields_vllm_ignores()

    video_sampling: VideoSampling | None = None
    images_as_video: bool | None = Field(
        default=None, description="two or more images in a message (and no video) as one video; default: the server's"
    )

    @model_validator(mode="before")
    @classmethod
    def _drop_openai_fields_vllm_ignores(cls, data: Any) -> Any:
        if isinstance(data, dict) and not cls.openai_fields_ignored.isdisjoint(data):
            return {key: value for key, value in data.items() if key not in cls.openai_fields_ignored}
        return data


class FileObject(BaseModel):
    """OpenAI's file object, plus ``video``: what the upload is, as decoded, so a client knows before asking that,
    e.g., a 5-frame clip can be sampled at ``video_sampling.num_frames`` <= 4."""

    id: str
    object: Literal["file"] = "file"
    bytes: int
    created_at: int
    expires_at: int | None = None
    filename: str
    purpose: str
    status: str = "processed"
    video: VideoInfo | None = None


class FileList(BaseModel):
    """One page of OpenAI's cursor-paginated list: pass ``last_id`` as ``after`` while ``has_more``."""

    object: Literal["list"] = "list"
    data: list[FileObject]
    first_id: str | None = None
    last_id: str | None = None
    has_more: bool = False


class FileDeleted(BaseModel):
    id: str
    object: Literal["file"] = "file"
    deleted: bool = True

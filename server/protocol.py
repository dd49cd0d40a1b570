"""Request and response models: vLLM's OpenAI protocol, extended by one body field for frame sampling."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from vllm.entrypoints.openai.chat_completion.protocol import ChatCompletionRequest


class VideoSampling(BaseModel):
    """How frames are taken from each video of a request; unset fields take the server's defaults.

    ``num_frames`` and ``fps`` are alternatives (qwen-vl-utils' ``nframes`` / ``fps``); the server caps both.
    """

    model_config = ConfigDict(extra="forbid")

    strategy: Literal["uniform", "space_aware"] | None = None
    num_frames: int | None = Field(default=None, ge=1)
    fps: float | None = Field(default=None, gt=0)
    max_pixels: int | None = Field(default=None, ge=28 * 28, description="per-frame pixel budget, capped by the server")


class SpatialChatCompletionRequest(ChatCompletionRequest):
    """OpenAI's chat request as vLLM parses it, plus ``video_sampling`` (send it as ``extra_body`` from the SDK)."""

    video_sampling: VideoSampling | None = None
    images_as_video: bool | None = Field(
        default=None, description="two or more images in a message (and no video) as one video; default: the server's"
    )


class FileObject(BaseModel):
    """OpenAI's file object."""

    id: str
    object: Literal["file"] = "file"
    bytes: int
    created_at: int
    expires_at: int | None = None
    filename: str
    purpose: str
    status: str = "processed"


class FileList(BaseModel):
    object: Literal["list"] = "list"
    data: list[FileObject]


class FileDeleted(BaseModel):
    id: str
    object: Literal["file"] = "file"
    deleted: bool = True

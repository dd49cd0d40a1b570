"""Frames sent as images are one video: the convention of lmms-eval, VLMEvalKit and many OpenAI clients.

A user message whose visual parts are two or more images and no video is served as one video of those frames, in
order, through the spatial encoder together: Qwen's own reading of a frame list (qwen-vl-utils' ``"video": [...]``)
and what Spatial-MLLM was trained on. Frames are used as given: at most the server's frame cap (more are thinned
evenly), padded to an even count by repeating the last (as qwen-vl-utils pads a frame list), all resized to the size
qwen-vl-utils' video rule gives the first frame under the server's pixel caps. Their timing is a frame list's in
qwen-vl-utils (2 fps, so one temporal patch per second), written by the same function as a sampled video's.
Off with ``--no-images-as-video`` or per request with ``"images_as_video": false``.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from sampling.cache import content_hash
from sampling.time_axis import video_metadata
from sampling.uniform import linspace_indices, resize_frames, resized_size
from server.errors import APIError
from server.frames.media_connector import PreparedVideo
from server.frames.video_prep import SamplingSpec, frames_used

FRAME_LIST_FPS = 2.0  # qwen-vl-utils' sample fps for a frame list
VIDEO_PART_TYPES = ("video_url", "file", "video")


@dataclass
class FrameList:
    """The image URLs of one message, and the video part that stands in for them (filled once prepared)."""

    part: dict[str, Any]
    urls: list[str]
    params: list[str]
    param: str


def merge_frame_lists(messages: list[Any]) -> list[FrameList]:
    """In each message with two or more image parts and no video part, replace the images by one placeholder
    video part (where the first image was) and return what each placeholder stands for."""
    found: list[FrameList] = []
    for m, message in enumerate(messages):
        content = message.get("content") if isinstance(message, dict) else None
        if not isinstance(content, list):
            continue
        parts = [(p, part) for p, part in enumerate(content) if isinstance(part, dict)]
        images = [(p, part) for p, part in parts if part.get("type") == "image_url"]
        if len(images) < 2 or any(part.get("type") in VIDEO_PART_TYPES for _, part in parts):
            continue
        urls, params = [], []
        for p, part in images:
            ref = part.get("image_url")
            url = ref.get("url") if isinstance(ref, dict) else ref
            if not isinstance(url, str) or not url:
                raise APIError(400, "An image part needs a URL.", f"messages[{m}].content[{p}]")
            urls.append(url)
            params.append(f"messages[{m}].content[{p}]")
        placeholder: dict[str, Any] = {"type": "video_url"}
        first = images[0][0]
        image_ids = {id(part) for _, part in images}
        kept = [part for i, part in enumerate(content) if i == first or id(part) not in image_ids]
        message["content"] = [placeholder if part is content[first] else part for part in kept]
        found.append(FrameList(placeholder, urls, params, f"messages[{m}].content"))
    return found


def _decode(data: bytes, param: str) -> np.ndarray:
    try:
        with Image.open(io.BytesIO(data)) as image:
            return np.array(image.convert("RGB"))
    except Image.DecompressionBombError as exc:  # PIL's pixel-count guard: refuse, never decode gigapixel frames
        raise APIError(413, "The image has too many pixels.", param) from exc
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise APIError(400, "The image could not be decoded.", param) from exc


def frames_video(images: list[bytes], params: list[str], spec: SamplingSpec) -> PreparedVideo:
    """The frame list as one prepared video (blocking: decode and resize run in the caller's worker thread)."""
    count = len(images)
    keep = linspace_indices(0, count - 1, spec.max_frames) if count > spec.max_frames else range(count)
    decoded = [_decode(images[i], params[i]) for i in keep]
    if len(decoded) % 2:
        decoded.append(decoded[-1])
    height, width = decoded[0].shape[:2]
    size = resized_size(len(decoded), height, width, spec.uniform())  # a bad size raises a 400 VideoError
    pixels = np.concatenate([resize_frames(frame[None], size).numpy() for frame in decoded])
    frames = np.ascontiguousarray(pixels.transpose(0, 2, 3, 1))
    count = len(frames)
    # the seed's rule for a frame list: 2 fps over frames 0..n-1 (the same under either time axis)
    indices = list(range(count))
    metadata = video_metadata(indices, FRAME_LIST_FPS, count, count / FRAME_LIST_FPS, spec.time_axis)
    digest = content_hash(b"".join(content_hash(image).encode() for image in images))
    used = frames_used("images", FRAME_LIST_FPS, indices)
    return PreparedVideo(frames, metadata, f"frames:{digest}:{spec.cache_key()}", used)

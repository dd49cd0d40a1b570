"""Uniform frame sampling with the rules of qwen-vl-utils 0.0.14 (``fetch_video``, decord backend).

The seed feeds videos through ``qwen_vl_utils.process_vision_info`` with ``nframes=16``; the model was trained
and evaluated on exactly those frames, so this module reproduces its arithmetic, not an approximation of it:

* **How many frames** (``smart_nframes``): ``nframes`` rounded to an even number (Python's round-half-even), or
  the fps rule ``frames / video_fps * fps`` clamped to ``[min_frames, max_frames]`` (defaults 4 and
  ``min(768, frames)``, made even) and to the frame count, then floored to even. Fewer frames than that in the
  video is an error in qwen-vl-utils, here :class:`VideoTooShortError`, unless ``pad_short_videos`` is set.
* **Which frames**: ``torch.linspace(start, end, n)`` in float32, rounded half-to-even; ``start``/``end`` come
  from the optional ``video_start``/``video_end`` seconds exactly as ``calculate_video_frame_range`` does. (The
  seed's offline ``sa_sampling.py`` truncates instead, and ``python -m sampling presample`` follows it there:
  :data:`sampling.presample.UNIFORM_DIFFERS`.)
* **What size**: the per-frame budget ``max(min(768*28*28, total_pixels / n * 2), int(min_pixels * 1.05))``,
  capped by an explicit ``max_pixels``, then ``smart_resize`` to multiples of 28. ``total_pixels`` defaults to
  ``MODEL_SEQ_LEN * 28 * 28 * 0.9`` with qwen-vl-utils' default ``MODEL_SEQ_LEN`` of 128000 (it reads an
  environment variable of that name; this module does not). ``resized_height``/``resized_width`` bypass the
  budget as in qwen-vl-utils (and must be given together here).
* **Pixels**: torchvision's tensor resize, re-done with ``torch.nn.functional.interpolate`` (bicubic,
  antialias, ``align_corners=False`` on float32, clamp to 0..255, round, uint8) on the same NHWC-strided batch,
  so the result is bit-identical; ``frames`` returns it as float32 in 0..255 like ``fetch_video`` does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from sampling.decode import DecodedVideo, VideoInfo, VideoSource, open_video
from sampling.errors import (
    CorruptVideoError,
    EmptyVideoError,
    SamplingParameterError,
    UnsupportedVideoError,
    VideoTooShortError,
)
from sampling.limits import DecodeLimits
from sampling.short_videos import uniform_refusal

IMAGE_FACTOR = 28  # ViT patch 14 x spatial merge 2
FRAME_FACTOR = 2
FPS = 2.0
FPS_MIN_FRAMES = 4
FPS_MAX_FRAMES = 768
MAX_RATIO = 200
VIDEO_MIN_PIXELS = 128 * IMAGE_FACTOR * IMAGE_FACTOR
VIDEO_MAX_PIXELS = 768 * IMAGE_FACTOR * IMAGE_FACTOR
MODEL_SEQ_LEN = 128000
VIDEO_TOTAL_PIXELS = MODEL_SEQ_LEN * IMAGE_FACTOR * IMAGE_FACTOR * 0.9
IMAGE_MIN_PIXELS = 4 * IMAGE_FACTOR * IMAGE_FACTOR  # smart_resize's defaults, used with resized_height/width
IMAGE_MAX_PIXELS = 16384 * IMAGE_FACTOR * IMAGE_FACTOR

_QWEN_KEYS = (
    "nframes",
    "fps",
    "min_frames",
    "max_frames",
    "min_pixels",
    "max_pixels",
    "total_pixels",
    "resized_height",
    "resized_width",
    "video_start",
    "video_end",
)


@dataclass(frozen=True)
class UniformSpec:
    """One video's sampling request, in qwen-vl-utils' terms (the keys of its ``{"type": "video"}`` element).

    Set ``nframes`` (the seed: 16) *or* ``fps``; with both None the fps rule runs at 2.0, as in qwen-vl-utils.
    ``UniformSpec(nframes=None, fps=1.0)`` selects the fps rule.
    """

    nframes: int | None = 16
    fps: float | None = None
    min_frames: int | None = None
    max_frames: int | None = None
    min_pixels: int | None = None
    max_pixels: int | None = None
    total_pixels: float | None = None
    resized_height: int | None = None
    resized_width: int | None = None
    video_start: float | None = None
    video_end: float | None = None
    pad_short_videos: bool = False  # not in qwen-vl-utils: repeat frames instead of failing on short videos

    def __post_init__(self) -> None:
        if self.nframes is not None and self.fps is not None:
            raise SamplingParameterError("Give either nframes or fps, not both.")
        if self.nframes is not None and self.nframes < 1:
            raise SamplingParameterError(f"nframes must be at least 1, got {self.nframes}.")
        if self.fps is not None and not (math.isfinite(self.fps) and self.fps > 0):
            raise SamplingParameterError(f"fps must be a positive number, got {self.fps}.")
        if self.nframes is not None and (self.min_frames is not None or self.max_frames is not None):
            raise SamplingParameterError("min_frames and max_frames only apply with fps sampling, not nframes.")
        if self.max_frames is not None and self.max_frames < FRAME_FACTOR:
            raise SamplingParameterError(f"max_frames must be at least {FRAME_FACTOR}, got {self.max_frames}.")
        for name in ("min_frames", "max_frames", "min_pixels", "max_pixels", "total_pixels"):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and value > 0):
                raise SamplingParameterError(f"{name} must be positive, got {value}.")
        if (self.resized_height is None) != (self.resized_width is None):
            raise SamplingParameterError("Give resized_height and resized_width together.")
        if self.resized_height is not None and min(self.resized_height, self.resized_width) < 1:  # type: ignore[type-var]
            raise SamplingParameterError("resized_height and resized_width must be positive.")
        for name in ("video_start", "video_end"):
            value = getattr(self, name)
            if value is not None and not math.isfinite(value):
                raise SamplingParameterError(f"{name} must be a number of seconds, got {value}.")

    def qwen_element(self, video: str) -> dict[str, Any]:
        """The qwen-vl-utils message element these settings stand for (for comparisons and logs)."""
        element: dict[str, Any] = {"type": "video", "video": video}
        element.update({k: getattr(self, k) for k in _QWEN_KEYS if getattr(self, k) is not None})
        return element


@dataclass(frozen=True)
class SampledFrames:
    """Sampled, resized frames plus what the model side needs to describe them."""

    frames_uint8: torch.Tensor  # [T, 3, H, W] uint8 RGB
    indices: tuple[int, ...]
    sample_fps: float  # qwen-vl-utils' video_sample_fps: frames kept per second of the sampled range
    range_frames: int  # frames in the sampled range (the whole video unless video_start/video_end)
    info: VideoInfo

    @property
    def frames(self) -> torch.Tensor:
        """float32 [T, 3, H, W] in 0..255: exactly what ``qwen_vl_utils.fetch_video`` returns."""
        return self.frames_uint8.float()

    def qwen_metadata(self) -> dict[str, Any]:
        """``video_metadata`` as ``fetch_video(..., return_video_metadata=True)`` builds it (decord backend)."""
        return {
            "fps": self.info.fps,
            "frames_indices": list(self.indices),
            "total_num_frames": self.range_frames,
            "video_backend": "decord",
        }


# --------------------------------------------------------------------------------------------------------
# frame selection


def frame_range(num_frames: int, video_fps: float, spec: UniformSpec) -> tuple[int, int, int]:
    """(first, last, count) frames inside ``video_start``..``video_end`` seconds; the whole video by default."""
    if num_frames <= 0:
        raise EmptyVideoError("The video has no frames.")
    if not video_fps > 0:
        raise CorruptVideoError("The video's frame rate is missing or invalid.")
    if spec.video_start is None and spec.video_end is None:
        return 0, num_frames - 1, num_frames
    duration = num_frames / video_fps
    start, end = 0, num_frames - 1
    if spec.video_start is not None:
        start = math.ceil(max(0.0, min(spec.video_start, duration)) * video_fps)
    if spec.video_end is not None:
        end = min(math.floor(max(0.0, min(spec.video_end, duration)) * video_fps), num_frames - 1)
    if start >= end:
        raise SamplingParameterError(
            f"video_start/video_end select no frames: frames {start}..{end} of a {duration:.2f} s video "
            f"({num_frames} frames at {video_fps:g} fps)."
        )
    return start, end, end - start + 1


def frame_count(range_frames: int, video_fps: float, spec: UniformSpec) -> int:
    """How many frames to sample from ``range_frames`` frames (qwen-vl-utils' ``smart_nframes``).

    Too few frames in the range raises :class:`VideoTooShortError`, as qwen-vl-utils raises ``ValueError``; with
    ``pad_short_videos`` the count is kept (at least 2) and the evenly spaced indices repeat frames instead.
    """
    if spec.nframes is not None:
        n = _round_by(spec.nframes, FRAME_FACTOR)
        if n < FRAME_FACTOR:
            raise SamplingParameterError(f"nframes={spec.nframes} rounds to {n}; ask for at least {FRAME_FACTOR}.")
    else:
        fps = spec.fps if spec.fps is not None else FPS
        min_frames = _ceil_by(spec.min_frames if spec.min_frames is not None else FPS_MIN_FRAMES, FRAME_FACTOR)
        max_frames = _floor_by(
            spec.max_frames if spec.max_frames is not None else min(FPS_MAX_FRAMES, range_frames), FRAME_FACTOR
        )
        wanted = range_frames / video_fps * fps
        n = _floor_by(min(min(max(wanted, min_frames), max_frames), range_frames), FRAME_FACTOR)
    if FRAME_FACTOR <= n <= range_frames:
        return n
    if spec.pad_short_videos:
        return max(n, FRAME_FACTOR)
    most = _floor_by(range_frames, FRAME_FACTOR)  # what space-aware does instead: sampling.short_videos
    raise VideoTooShortError(uniform_refusal(range_frames, max(n, FRAME_FACTOR), most))


def linspace_indices(first: int, last: int, n: int) -> list[int]:
    """``n`` evenly spaced indices from ``first`` to ``last`` (float32 linspace, round half to even)."""
    return torch.linspace(first, last, n).round().long().tolist()


def uniform_frame_indices(num_frames: int, video_fps: float, spec: UniformSpec) -> list[int]:
    """The frame indices qwen-vl-utils' decord backend reads for this video and spec."""
    first, last, count = frame_range(num_frames, video_fps, spec)
    return linspace_indices(first, last, frame_count(count, video_fps, spec))


# --------------------------------------------------------------------------------------------------------
# frame size


def smart_resize(
    height: int,
    width: int,
    factor: int = IMAGE_FACTOR,
    min_pixels: float = IMAGE_MIN_PIXELS,
    max_pixels: float = IMAGE_MAX_PIXELS,
) -> tuple[int, int]:
    """Nearest size with both sides multiples of ``factor``, area within [min_pixels, max_pixels], same aspect."""
    if max_pixels < min_pixels:
        raise SamplingParameterError(f"max_pixels ({max_pixels:g}) is below min_pixels ({min_pixels:g}).")
    if max(height, width) / min(height, width) > MAX_RATIO:
        raise UnsupportedVideoError(f"The frames are {width}x{height}; the aspect ratio must be below {MAX_RATIO}:1.")
    h_bar = max(factor, _round_by(height, factor))
    w_bar = max(factor, _round_by(width, factor))
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        h_bar = _floor_by(height / beta, factor)
        w_bar = _floor_by(width / beta, factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = _ceil_by(height * beta, factor)
        w_bar = _ceil_by(width * beta, factor)
    return h_bar, w_bar


def resized_size(nframes: int, height: int, width: int, spec: UniformSpec) -> tuple[int, int]:
    """(height, width) qwen-vl-utils resizes ``nframes`` frames of ``height`` x ``width`` to."""
    if spec.resized_height is not None and spec.resized_width is not None:
        try:
            return smart_resize(spec.resized_height, spec.resized_width)
        except UnsupportedVideoError as exc:
            raise SamplingParameterError(f"resized_height/resized_width: {exc}") from exc
    min_pixels = spec.min_pixels if spec.min_pixels is not None else VIDEO_MIN_PIXELS
    total_pixels = spec.total_pixels if spec.total_pixels is not None else VIDEO_TOTAL_PIXELS
    max_pixels = max(min(VIDEO_MAX_PIXELS, total_pixels / nframes * FRAME_FACTOR), int(min_pixels * 1.05))
    if spec.max_pixels is not None:
        max_pixels = min(spec.max_pixels, max_pixels)
    return smart_resize(height, width, IMAGE_FACTOR, min_pixels, max_pixels)


def resize_frames(frames: np.ndarray, size: tuple[int, int]) -> torch.Tensor:
    """uint8 [T, H, W, 3] -> uint8 [T, 3, h, w], bit-identical to torchvision's bicubic antialiased tensor resize."""
    video = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2)  # NCHW view of NHWC memory
    if tuple(video.shape[-2:]) == tuple(size):
        return video
    out = F.interpolate(video.to(torch.float32), size=list(size), mode="bicubic", align_corners=False, antialias=True)
    return out.clamp_(0, 255).round_().to(torch.uint8)


# --------------------------------------------------------------------------------------------------------
# the whole step


def sample_uniform(video: DecodedVideo, spec: UniformSpec | None = None) -> SampledFrames:
    """Pick, decode and resize frames of an opened video as qwen-vl-utils would (see the module docstring)."""
    spec = spec or UniformSpec()
    info = video.info
    first, last, count = frame_range(info.num_frames, info.fps, spec)
    n = frame_count(count, info.fps, spec)
    indices = linspace_indices(first, last, n)
    size = resized_size(n, info.height, info.width, spec)  # before decoding: bad sizes fail cheaply
    pixels = resize_frames(video.frames(indices), size)
    return SampledFrames(pixels, tuple(indices), n / max(count, 1e-6) * info.fps, count, info)


def sample_uniform_from(
    source: VideoSource, spec: UniformSpec | None = None, limits: DecodeLimits | None = None
) -> SampledFrames:
    """Open, sample and close in one call: what a server worker thread runs per request."""
    with open_video(source, limits) as video:
        return sample_uniform(video, spec)


def _round_by(number: float, factor: int) -> int:
    return round(number / factor) * factor


def _ceil_by(number: float, factor: int) -> int:
    return math.ceil(number / factor) * factor


def _floor_by(number: float, factor: int) -> int:
    return math.floor(number / factor) * factor

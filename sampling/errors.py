"""Typed video errors, one per way an upload can fail, so the HTTP layer maps each to a status without parsing text.

Every error is a ``ValueError`` (bad input, not a server fault). ``code`` is the OpenAI-style error code and
``status`` the HTTP status the server should answer with. Messages are written for the API caller: they say what
was wrong with the upload and never carry server paths or decoder internals.

Status choices: 415 for "this is not a video at all", 413 for volume limits the server could raise (bytes,
decoded pixels), 400 for everything else, including a duration over the limit (:class:`VideoTooLongError`): a
long video is a property of the content the caller can fix by trimming, not a body-size problem, and the upload
itself may be small.
"""

from __future__ import annotations

from typing import ClassVar


class VideoError(ValueError):
    """Base class: a video upload or sampling request that cannot be served as asked."""

    code: ClassVar[str] = "invalid_video"
    status: ClassVar[int] = 400


class NotAVideoError(VideoError):
    """The bytes are not a video: empty, text, an image, random data, or a container with no video stream."""

    code = "unsupported_media_type"
    status = 415


class UnsupportedCodecError(VideoError):
    """A video stream in a codec this server's decoder cannot read (e.g. AV1 with decord's ffmpeg)."""

    code = "unsupported_codec"
    status = 415


class CorruptVideoError(VideoError):
    """A recognisable video container that is truncated or damaged, so it cannot be decoded."""

    code = "corrupt_video"
    status = 400


class EmptyVideoError(VideoError):
    """A video stream that holds no frames."""

    code = "empty_video"
    status = 400


class VideoTooLargeError(VideoError):
    """The upload is over the configured byte limit."""

    code = "video_too_large"
    status = 413


class VideoTooLongError(VideoError):
    """The video's duration is over the configured limit (400: see the module docstring)."""

    code = "video_too_long"
    status = 400


class DecodedPixelsExceededError(VideoError):
    """Decoding the requested frames would exceed the configured pixel budget (frames x height x width)."""

    code = "decoded_pixels_exceeded"
    status = 413


class TooManyFramesError(VideoError):
    """More frames were requested than the server decodes per request."""

    code = "too_many_frames"
    status = 400


class VideoTooShortError(VideoError):
    """The video (or the requested time range) has fewer frames than the sampling rule needs."""

    code = "video_too_short"
    status = 400


class UnsupportedVideoError(VideoError):
    """A decodable video the model cannot take, e.g. an aspect ratio over 200:1."""

    code = "unsupported_video"
    status = 400


class SamplingParameterError(VideoError):
    """Sampling parameters that contradict each other or are out of range (e.g. max_pixels below min_pixels)."""

    code = "invalid_sampling_parameters"
    status = 400

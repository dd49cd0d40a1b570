"""Per-request decode limits: the server's guard against uploads that would exhaust memory or time.

The defaults fit one request on a serving node that decodes a few videos at once:

* ``max_bytes`` 512 MiB: a long phone video at high bitrate, well above what the model can use.
* ``max_duration_s`` 3600 s: an hour; decord indexes every packet on open, so longer means slower probing.
* ``max_frames`` 768: qwen-vl-utils' own ceiling for the fps rule (``FPS_MAX_FRAMES``).
* ``max_decoded_pixels`` 64 x 1920 x 1080 (about 133 M pixels, 400 MB of RGB): 16 frames of 4K, 64 of 1080p or
  about 430 of 640x480, checked *before* decoding because the RGB frames are what costs memory.

The server builds one from its settings; each check raises the typed error from :mod:`sampling.errors`.
"""

from __future__ import annotations

from dataclasses import dataclass

from sampling.errors import DecodedPixelsExceededError, TooManyFramesError, VideoTooLargeError, VideoTooLongError

MiB = 1 << 20


@dataclass(frozen=True)
class DecodeLimits:
    max_bytes: int = 512 * MiB
    max_duration_s: float = 3600.0
    max_decoded_pixels: int = 64 * 1920 * 1080
    max_frames: int = 768

    def __post_init__(self) -> None:
        for name in ("max_bytes", "max_duration_s", "max_decoded_pixels", "max_frames"):
            if not getattr(self, name) > 0:
                raise ValueError(f"DecodeLimits.{name} must be positive, got {getattr(self, name)!r}")

    def check_bytes(self, n: int) -> None:
        if n > self.max_bytes:
            raise VideoTooLargeError(
                f"The video is {_mib(n)} MiB; this server accepts at most {_mib(self.max_bytes)} MiB."
            )

    def check_duration(self, seconds: float) -> None:
        if seconds > self.max_duration_s:
            raise VideoTooLongError(
                f"The video lasts {seconds:.1f} s; this server accepts at most {self.max_duration_s:g} s."
            )

    def check_frames(self, count: int, height: int, width: int) -> None:
        """Frame count and decoded-pixel budget for decoding ``count`` frames of ``height`` x ``width``."""
        if count > self.max_frames:
            raise TooManyFramesError(
                f"{count} frames were requested; this server decodes at most {self.max_frames} frames per video."
            )
        pixels = count * height * width
        if pixels > self.max_decoded_pixels:
            raise DecodedPixelsExceededError(
                f"Decoding {count} frames of {width}x{height} needs {pixels:,} pixels; this server decodes at "
                f"most {self.max_decoded_pixels:,} pixels per video. Ask for fewer frames or send a smaller video."
            )


def _mib(n: int) -> str:
    return f"{n / MiB:.1f}"

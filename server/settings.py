"""The server's own settings (everything that is not a vLLM engine option), with the caps no request can exceed.

They are filled from the command line (:mod:`server.cli`), where every option can also come from an environment
variable. Caps are hard limits: a request may ask for less, never for more (vLLM CVE-2026-105758 was a
per-request frame count nobody bounded).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

Strategy = Literal["uniform", "space_aware"]

MiB = 1 << 20
GiB = 1 << 30


@dataclass(frozen=True)
class ServerSettings:
    """Options of our layer; defaults suit one GPU node serving Spatial-MLLM-3B."""

    api_keys: tuple[str, ...] = ()
    # frame sampling: request defaults and hard caps
    default_strategy: Strategy = "uniform"
    default_num_frames: int = 16
    max_num_frames: int = 64
    min_pixels_per_frame: int = 128 * 28 * 28
    max_pixels_per_frame: int = 768 * 28 * 28
    max_total_pixels: int = int(128000 * 28 * 28 * 0.9)  # qwen-vl-utils' VIDEO_TOTAL_PIXELS default
    max_video_bytes: int = 512 * MiB
    max_video_duration_s: float = 3600.0
    max_decoded_pixels: int = 128 * 1920 * 1080  # all decoded frames of one video, candidates included
    space_aware_candidates: int = 128
    space_aware_weights: Path | None = None  # None: the served checkpoint's spatial_encoder.vggt_model.*
    space_aware_device: str = "auto"
    sampling_cache_bytes: int = 2 * GiB  # prepared frames kept for repeated questions, by their size in memory
    decode_timeout_s: float = 120.0
    # URL fetching
    fetch_timeout_s: float = 30.0
    fetch_max_redirects: int = 3
    allow_private_urls: bool = False
    # uploads
    uploads_dir: Path = field(default_factory=lambda: Path(".cache/uploads"))
    upload_ttl_s: float = 24 * 3600.0
    uploads_quota_bytes: int = 20 * GiB
    max_videos_per_request: int = 2
    # admission control
    requests_per_minute_per_key: int = 0  # 0: no per-key quota
    max_concurrent_requests: int = 64
    retry_after_s: int = 2
    media_workers: int = 4
    images_as_video: bool = True  # a message's 2+ images (no video) are one video's frames (server/image_frames.py)

    def __post_init__(self) -> None:
        if not 1 <= self.default_num_frames <= self.max_num_frames:
            raise ValueError(f"default frame count {self.default_num_frames} must be within 1..{self.max_num_frames}")
        if self.min_pixels_per_frame > self.max_pixels_per_frame:
            raise ValueError("min pixels per frame exceed max pixels per frame")
        if self.max_concurrent_requests < 1:
            raise ValueError("max concurrent requests must be at least 1")

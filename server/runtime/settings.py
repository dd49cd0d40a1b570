"""The server's own settings (everything that is not a vLLM engine option), with the caps no request can exceed.

One typed object: every field is one command-line option ``--field-name`` (and the environment variable
``SPATIAL_MLLM_FIELD_NAME``), with its description as the option's help (:mod:`server.runtime.cli`). Caps are hard
limits: a request may ask for less, never for more (unbounded ``data:video/jpeg;base64,`` frame lists were vLLM's
CVE-2026-34755 / GHSA-pq5c-rjhq-qp7p, fixed upstream in 0.19.0).

Keep one field per line: several features add their own options here.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from sampling.time_axis import TimeAxis

Strategy = Literal["uniform", "space_aware"]

MiB = 1 << 20
GiB = 1 << 30


def default_uploads_dir() -> Path:
    """Where a server keeps state (XDG): ``$XDG_STATE_HOME/spatial-mllm-serve/uploads``, by default under
    ``~/.local/state``; never the working directory, which changes between runs."""
    state_home = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state_home) / "spatial-mllm-serve" / "uploads"


class ServerSettings(BaseModel):
    """Options of our layer; defaults suit one GPU node serving Spatial-MLLM-3B."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    api_keys: tuple[str, ...] = Field((), description="API keys (from vLLM's --api-key); empty: no key check")
    # frame sampling: request defaults and hard caps
    default_strategy: Strategy = Field("uniform", description="frame sampling when a request names none")
    default_num_frames: int = Field(16, description="frames per video when a request names no count")
    max_num_frames: int = Field(64, description="most frames a request may ask for per video")
    min_pixels_per_frame: int = Field(128 * 28 * 28, description="smallest frame area (pixels) after resizing")
    max_pixels_per_frame: int = Field(768 * 28 * 28, description="largest frame area (pixels) after resizing")
    max_total_pixels: int = Field(int(128000 * 28 * 28 * 0.9), description="cap on all frames' pixels of one video")
    max_video_bytes: int = Field(512 * MiB, description="largest video a request may bring, in bytes")
    # a 60 s phone clip is ~30-50 MB as a data URL; larger videos go through /v1/files
    max_json_body_bytes: int = Field(96 * MiB, description="largest JSON chat body (data-URL videos); use /v1/files")
    max_video_duration_s: float = Field(3600.0, description="longest video a request may bring, in seconds")
    max_decoded_pixels: int = Field(128 * 1920 * 1080, description="cap on decoded pixels per video, candidates too")
    space_aware_candidates: int = Field(128, description="frames decoded as candidates for space-aware selection")
    space_aware_weights: Path | None = Field(None, description="VGGT weights for space-aware sampling (default: model)")
    space_aware_device: str = Field("auto", description="VGGT worker device: auto (last GPU, else cpu), cpu, cuda:N")
    sampling_cache_bytes: int = Field(2 * GiB, description="memory for prepared frames kept for repeated questions")
    decode_timeout_s: float = Field(120.0, description="seconds one video may take to decode and sample")
    # URL fetching
    fetch_timeout_s: float = Field(30.0, description="seconds to fetch one media URL")
    fetch_max_redirects: int = Field(3, description="redirects followed when fetching a media URL")
    allow_private_urls: bool = Field(False, description="let media URLs point at private or loopback addresses")
    # uploads
    uploads_dir: Path = Field(
        default_factory=default_uploads_dir,
        description="where uploaded videos are kept (default: $XDG_STATE_HOME/spatial-mllm-serve/uploads)",
    )
    upload_ttl_s: float = Field(24 * 3600.0, description="seconds an upload is kept")
    uploads_quota_bytes: int = Field(20 * GiB, description="total bytes of uploads kept at once, all keys together")
    max_videos_per_request: int = Field(2, description="most videos in one request")
    # admission control
    requests_per_minute_per_key: int = Field(0, description="requests per minute per API key (0: no quota)")
    max_concurrent_requests: int = Field(64, description="generation requests in flight; more get 503")
    retry_after_s: int = Field(2, description="Retry-After seconds sent with 503 and 429 answers")
    media_workers: int = Field(4, description="threads decoding and sampling videos")
    # M-RoPE time positions (sampling.time_axis): "seed_exact" = the original's inference rule (1.0 s per 2 frames,
    # what its published numbers used); "real_fps" = the sampled frames' real timing
    default_time_axis: TimeAxis = Field(
        "seed_exact", description="time positions of video frames (seed_exact, real_fps)"
    )
    uploads_quota_bytes_per_key: int = Field(5 * GiB, description="bytes of uploads one API key may keep")
    images_as_video: bool = Field(True, description="a message's 2+ images (no video) are one video's frames")
    space_aware_budget_gib: float = Field(
        0.0, description="geometry worker's memory budget in GiB (0: what one pass of the candidates needs)"
    )
    space_aware_queue: int = Field(4, description="space-aware passes that may wait behind the running one (503 past)")
    playground: bool = Field(False, description="serve the browser playground at /playground (on with --demo)")

    @model_validator(mode="after")
    def _consistent_caps(self) -> ServerSettings:
        if not 1 <= self.default_num_frames <= self.max_num_frames:
            raise ValueError(
                f"--default-num-frames {self.default_num_frames} must be within 1..--max-num-frames "
                f"({self.max_num_frames}): lower it or raise --max-num-frames"
            )
        if self.min_pixels_per_frame > self.max_pixels_per_frame:
            raise ValueError(
                f"--min-pixels-per-frame {self.min_pixels_per_frame} exceeds --max-pixels-per-frame "
                f"{self.max_pixels_per_frame}: lower the first or raise the second"
            )
        if self.space_aware_queue < 1:
            raise ValueError("--space-aware-queue must be at least 1")
        if self.space_aware_budget_gib < 0:
            raise ValueError("--space-aware-budget-gib must not be negative (0: what one pass needs)")
        if self.max_concurrent_requests < 1:
            raise ValueError("--max-concurrent-requests must be at least 1")
        return self


def option_name(field: str) -> str:
    """The command-line flag of a settings field."""
    return "--" + field.replace("_", "-")

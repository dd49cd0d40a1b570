"""From video bytes to the frames the model sees: decode, sample (uniform or space-aware), cache.

Everything heavy runs in a worker pool under a deadline so the event loop never blocks. Results are cached by
the video's SHA-256 and every sampling parameter (never by a name a client picks), so a second question about
the same video skips decoding and sampling, and since the frames then carry the same key, vLLM's processor and
encoder caches hit too.
"""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from sampling.cache import SamplingCache
from sampling.decode import open_video
from sampling.limits import DecodeLimits
from sampling.uniform import UniformSpec, resize_frames, resized_size, sample_uniform
from server.connector import PreparedVideo
from server.errors import APIError
from server.metrics import DECODE_SECONDS, SAMPLING_CACHE, SAMPLING_SECONDS
from server.settings import ServerSettings


@dataclass(frozen=True)
class SamplingSpec:
    """One request's frame sampling, defaults and caps already applied."""

    strategy: Literal["uniform", "space_aware"]
    num_frames: int | None
    fps: float | None
    max_frames: int
    min_pixels: int
    max_pixels: int
    total_pixels: int

    def cache_key(self) -> str:
        fields = (self.strategy, self.num_frames, self.fps, self.max_frames, self.min_pixels, self.max_pixels)
        return ":".join(map(str, (*fields, self.total_pixels)))

    def uniform(self) -> UniformSpec:
        return UniformSpec(
            nframes=self.num_frames,
            fps=self.fps,
            max_frames=self.max_frames if self.fps is not None else None,
            min_pixels=self.min_pixels,
            max_pixels=self.max_pixels,
            total_pixels=self.total_pixels,
        )


def video_metadata(fps: float, duration_s: float, total_num_frames: int, indices: list[int]) -> dict[str, Any]:
    """What vLLM's Qwen2.5-VL processor reads beside the frames (for sampled videos and frame lists alike).

    The processor's sampled fps is ``len(indices) / total_num_frames * fps``, which sets the temporal M-RoPE step
    exactly as the seed's qwen-vl-utils ``video_sample_fps`` does.
    """
    return {
        "fps": fps,
        "duration": duration_s,
        "total_num_frames": total_num_frames,
        "frames_indices": [int(i) for i in indices],
        "video_backend": "decord",
        "do_sample_frames": False,
    }


class VideoPreparer:
    """Decodes and samples videos in a bounded thread pool, with an LRU of prepared frames."""

    def __init__(self, settings: ServerSettings, geometry_source: Path | None) -> None:
        self.settings = settings
        self.limits = DecodeLimits(
            max_bytes=settings.max_video_bytes,
            max_duration_s=settings.max_video_duration_s,
            max_decoded_pixels=settings.max_decoded_pixels,
            max_frames=max(settings.space_aware_candidates, settings.max_num_frames),
        )
        self.cache: SamplingCache[PreparedVideo] = SamplingCache(
            settings.sampling_cache_bytes, sizeof=lambda video: max(1, video.frames.nbytes)
        )
        self.pool = ThreadPoolExecutor(settings.media_workers, thread_name_prefix="video")
        self.geometry_source = geometry_source
        self._geometry = None
        self._geometry_lock = threading.Lock()
        self._in_flight: dict[str, asyncio.Future[PreparedVideo]] = {}

    async def prepare(self, data: bytes, digest: str, spec: SamplingSpec, param: str) -> PreparedVideo:
        """The frames for ``data`` under ``spec``: from the cache, from a computation already under way for the
        same key (concurrent questions about one new video decode it once), or computed now."""
        key = f"{digest}:{spec.cache_key()}"
        cached = self.cache.lookup(key)
        if cached is not None:
            SAMPLING_CACHE.labels("hit").inc()
            return cached
        pending = self._in_flight.get(key)
        if pending is not None:
            SAMPLING_CACHE.labels("joined").inc()
            return await asyncio.shield(pending)
        SAMPLING_CACHE.labels("miss").inc()
        task = asyncio.ensure_future(self._compute(data, spec, key, param))
        self._in_flight[key] = task
        task.add_done_callback(lambda _: self._in_flight.pop(key, None))
        # shielded: a client that leaves does not cancel the work others may be waiting for
        return await asyncio.shield(task)

    async def _compute(self, data: bytes, spec: SamplingSpec, key: str, param: str) -> PreparedVideo:
        loop = asyncio.get_running_loop()
        limit = self.settings.decode_timeout_s
        try:
            async with asyncio.timeout(limit):
                video = await loop.run_in_executor(self.pool, self._prepare_sync, data, spec, key)
        except TimeoutError as exc:
            # the server is too busy or the file too slow to decode: retryable, not the client's fault alone
            message = f"Preparing the video took longer than {limit:g} s; the server may be busy."
            raise APIError(503, message, param, retry_after=self.settings.retry_after_s) from exc
        self.cache.store(key, video)
        return video

    def _prepare_sync(self, data: bytes, spec: SamplingSpec, key: str) -> PreparedVideo:
        started = time.perf_counter()
        with open_video(data, self.limits) as video:
            info = video.info
            uniform = spec.uniform()
            if spec.strategy == "space_aware":
                indices = self._space_aware_indices(video, spec)
                decode_started = time.perf_counter()
                size = resized_size(len(indices), info.height, info.width, uniform)
                pixels = resize_frames(video.frames(indices), size)
                range_frames = info.num_frames
            else:
                decode_started = time.perf_counter()
                sampled = sample_uniform(video, uniform)
                indices, pixels, range_frames = list(sampled.indices), sampled.frames_uint8, sampled.range_frames
            DECODE_SECONDS.observe(time.perf_counter() - decode_started)
        metadata = video_metadata(info.fps, info.duration_s, range_frames, indices)
        frames = np.ascontiguousarray(pixels.permute(0, 2, 3, 1).numpy())
        SAMPLING_SECONDS.labels(spec.strategy).observe(time.perf_counter() - started)
        return PreparedVideo(frames, metadata, key)

    async def probe(self, data: bytes, param: str) -> None:
        """Raise the typed error when ``data`` is not a decodable video within the limits."""
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.settings.decode_timeout_s):
                await loop.run_in_executor(self.pool, self._probe_sync, data)
        except TimeoutError as exc:
            raise APIError(
                503, "Probing the video took too long.", param, retry_after=self.settings.retry_after_s
            ) from exc

    def _probe_sync(self, data: bytes) -> None:
        with open_video(data, self.limits) as video:
            video.frames([0])

    def _space_aware_indices(self, video, spec: SamplingSpec) -> list[int]:
        from sampling.space_aware import space_aware_indices

        network = self._load_geometry()
        k = spec.num_frames or self.settings.default_num_frames
        return space_aware_indices(
            video, video.info.num_frames, k, network, max_candidates=self.settings.space_aware_candidates
        )

    def _load_geometry(self):
        with self._geometry_lock:
            if self._geometry is None:
                from sampling.geometry import GeometryNetwork

                if self.geometry_source is None:
                    raise APIError(400, "Space-aware sampling is not available on this server (no VGGT weights).")
                import torch

                device = self.settings.space_aware_device
                if device == "auto":
                    device = "cuda" if torch.cuda.is_available() else "cpu"
                dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
                self._geometry = GeometryNetwork.load(self.geometry_source, device=device, dtype=dtype)
            return self._geometry

    def shutdown(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)

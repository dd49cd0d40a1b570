"""From video bytes to the frames the model sees: decode, sample (uniform or space-aware), cache.

Uniform decoding runs in supervised decoder processes (:mod:`server.frames.decode_pool`: one that hangs or crashes is
replaced and its request gets a 503), space-aware candidate decoding and resizing in a thread pool, all under a
deadline so the event loop never blocks; the VGGT pass of
space-aware sampling runs in the geometry worker process (:mod:`server.frames.geometry_worker`), the one owner of that
GPU work. Space-aware sampling decodes each candidate once: the chosen frames are taken from the same decode.
Results are cached by the video's SHA-256 and every sampling parameter (never by a name a client picks), so a
second question about the same video skips decoding and sampling, and since the frames then carry the same key,
vLLM's processor and encoder caches hit too. Concurrent questions about one new video share one computation,
which stops (its VGGT pass too) once none of them waits for it; an upload can start it before any question.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from sampling.cache import SamplingCache
from sampling.decode import VideoInfo, open_video
from sampling.errors import VideoTooShortError
from sampling.frame_list import resize_like_frame_list
from sampling.geometry import candidate_indices, preprocess_frames_uint8
from sampling.limits import DecodeLimits
from sampling.short_videos import space_aware_note
from sampling.time_axis import TimeAxis, video_metadata
from sampling.uniform import UniformSpec, resize_frames, resized_size
from server.errors import APIError, naming
from server.frames.decode_jobs import decode_uniform, start_worker
from server.frames.decode_jobs import probe as probe_video
from server.frames.decode_pool import DecodePool
from server.frames.geometry_worker import GeometryWorker
from server.frames.media_connector import PreparedVideo
from server.metrics import DECODE_SECONDS, SAMPLING_CACHE, SAMPLING_SECONDS, SPACE_AWARE_STAGE_SECONDS
from server.runtime.settings import ServerSettings
from server.uploads.file_store import StoredSelection

if TYPE_CHECKING:
    from server.uploads.file_store import FileStore

LOG = logging.getLogger("spatial_mllm_serve")
ReadBytes = Callable[[], Awaitable[bytes]]


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
    resized_height: int | None = None
    resized_width: int | None = None
    time_axis: TimeAxis = "seed_exact"  # M-RoPE time positions (sampling.time_axis); part of the frames' identity

    def cache_key(self) -> str:
        fields = (self.strategy, self.num_frames, self.fps, self.max_frames, self.min_pixels, self.max_pixels)
        return ":".join(map(str, (*fields, self.total_pixels, self.resized_height, self.resized_width, self.time_axis)))

    def uniform(self) -> UniformSpec:
        return UniformSpec(
            nframes=self.num_frames,
            fps=self.fps,
            max_frames=self.max_frames if self.fps is not None else None,
            min_pixels=self.min_pixels,
            max_pixels=self.max_pixels,
            total_pixels=self.total_pixels,
            resized_height=self.resized_height,
            resized_width=self.resized_width,
        )


@dataclass(frozen=True)
class Candidates:
    """One decode of a video's space-aware candidates: full-size frames and VGGT's input made from them."""

    info: VideoInfo
    indices: list[int]
    frames: np.ndarray  # uint8 [T, H, W, 3], what the chosen frames are cut from
    vggt_input: np.ndarray  # uint8 [T, 3, h, 518], the seed's preprocessing before the division by 255


@dataclass
class _InFlight:
    task: asyncio.Task[PreparedVideo]
    waiters: int = 0


def frames_used(strategy: str, fps: float, indices: list[int], candidates: int | None = None) -> dict[str, Any]:
    """The ``video_frames`` entry a chat answer carries: which frames the model was shown, and when they are."""
    used: dict[str, Any] = {
        "strategy": strategy,
        "indices": [int(i) for i in indices],
        "timestamps_s": [round(int(i) / fps, 6) if fps > 0 else None for i in indices],
    }
    if candidates is not None:
        used["candidates"] = candidates
    return used


def _as_prepared(pixels, metadata: dict[str, Any], key: str, used: dict[str, Any]) -> PreparedVideo:
    """uint8 [T, 3, H, W] tensor -> the [T, H, W, 3] array vLLM takes."""
    return PreparedVideo(np.ascontiguousarray(pixels.permute(0, 2, 3, 1).numpy()), metadata, key, used)


class VideoPreparer:
    """Decodes and samples videos, with an LRU of prepared frames: uniform decoding (and probing uploads) in
    :mod:`server.frames.decode_pool`'s supervised processes, space-aware candidate decoding and resizing in a small
    thread pool (``pool``), both under the decode deadline; space-aware sampling's VGGT pass goes to ``geometry``
    (None: no VGGT weights, space-aware requests get a 400). A space-aware choice made for an upload is kept
    with it in ``selections`` (the upload store, shared by every replica that shares the uploads directory), so no
    process runs VGGT twice for the same file and sampling."""

    def __init__(
        self, settings: ServerSettings, geometry: GeometryWorker | None = None, selections: FileStore | None = None
    ) -> None:
        self.settings = settings
        self.selections = selections
        self.limits = DecodeLimits(
            max_bytes=settings.max_video_bytes,
            max_duration_s=settings.max_video_duration_s,
            max_decoded_pixels=settings.max_decoded_pixels,
            max_frames=max(settings.space_aware_candidates, settings.max_num_frames),
        )
        self.cache: SamplingCache[PreparedVideo] = SamplingCache(
            settings.sampling_cache_bytes, sizeof=lambda video: max(1, video.frames.nbytes)
        )
        self.pool = ThreadPoolExecutor(settings.media_workers, thread_name_prefix="video")  # space-aware decoding
        # uniform decoding, which can hang or crash on a hostile file, runs in supervised processes
        self.decoder = DecodePool(
            settings.media_workers, settings.decode_timeout_s, settings.retry_after_s, start_worker
        )
        self.geometry = geometry
        self._in_flight: dict[str, _InFlight] = {}

    async def prepare(
        self, data: bytes | ReadBytes, digest: str, spec: SamplingSpec, param: str, file_id: str | None = None
    ) -> PreparedVideo:
        """The frames for the video of SHA-256 ``digest`` under ``spec``: from the cache, from a computation already
        under way for the same key (concurrent questions about one new video decode it once), or computed now
        (reusing the space-aware selection stored with the upload ``file_id``, when one is).

        ``data`` is the video's bytes, or a reader of them that is awaited only when they must be decoded: a stored
        upload, whose digest its record holds, is then not read at all when its frames are prepared."""
        key = f"{digest}:{spec.cache_key()}"
        found = self._found(key)
        if found is None and callable(data):
            data = await data()
            found = self._found(key)  # someone may have prepared or started it while we read
        if isinstance(found, PreparedVideo):
            SAMPLING_CACHE.labels("hit").inc()
            return found
        entry = found
        if entry is not None:
            SAMPLING_CACHE.labels("joined").inc()
        else:
            assert not callable(data)  # read above
            SAMPLING_CACHE.labels("miss").inc()
            entry = self._start(data, spec, key, param, file_id)
        entry.waiters += 1
        try:
            # shielded: one client leaving does not cancel the work others wait for...
            with naming(param):
                return await asyncio.shield(entry.task)
        finally:
            entry.waiters -= 1
            if entry.waiters == 0 and not entry.task.done():
                entry.task.cancel()  # ...but the last one leaving does (a queued or running VGGT pass too)
                self._forget(key, entry)  # a question arriving now starts afresh rather than join a cancelled task

    def _found(self, key: str) -> PreparedVideo | _InFlight | None:
        return self.cache.lookup(key) or self._in_flight.get(key)

    def prepare_in_background(self, data: bytes, digest: str, spec: SamplingSpec, file_id: str | None = None) -> None:
        """Start preparing now (e.g. on upload) so the first question finds the frames ready or joins the work."""
        key = f"{digest}:{spec.cache_key()}"
        if key in self._in_flight or self.cache.lookup(key) is not None:
            return
        SAMPLING_CACHE.labels("prepare_on_upload").inc()
        entry = self._start(data, spec, key, "file", file_id)
        entry.waiters += 1  # held until done: nobody asked yet, and nobody's leaving should stop it
        entry.task.add_done_callback(_log_background_failure)

    def _start(self, data: bytes, spec: SamplingSpec, key: str, param: str, file_id: str | None) -> _InFlight:
        entry = _InFlight(asyncio.ensure_future(self._compute(data, spec, key, param, file_id)))
        self._in_flight[key] = entry
        entry.task.add_done_callback(lambda _: self._forget(key, entry))
        return entry

    def _forget(self, key: str, entry: _InFlight) -> None:
        if self._in_flight.get(key) is entry:
            del self._in_flight[key]

    async def _compute(
        self, data: bytes, spec: SamplingSpec, key: str, param: str, file_id: str | None
    ) -> PreparedVideo:
        if spec.strategy == "space_aware":
            video = await self._space_aware(data, spec, key, param, file_id)
        else:
            video = await self._within_deadline(param, self._prepare_uniform(data, spec, key))
        self.cache.store(key, video)
        return video

    async def _within_deadline(self, param: str, work: Awaitable[Any]) -> Any:
        """``work`` under the decode deadline: 503 past it (the server is too busy or the file too slow)."""
        limit = self.settings.decode_timeout_s
        try:
            async with asyncio.timeout(limit):
                return await work
        except TimeoutError as exc:
            message = f"Preparing the video took longer than {limit:g} s; the server may be busy."
            raise APIError(503, message, param, retry_after=self.settings.retry_after_s) from exc

    async def _in_pool(self, param: str, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(*args)`` in the media thread pool under the decode deadline."""
        return await self._within_deadline(param, asyncio.get_running_loop().run_in_executor(self.pool, fn, *args))

    async def _prepare_uniform(self, data: bytes, spec: SamplingSpec, key: str) -> PreparedVideo:
        try:
            decoded = await self.decoder.run(decode_uniform, data, spec.uniform(), self.limits, spec.time_axis)
        except VideoTooShortError as exc:  # say which request field asks for fewer frames
            message = f"{exc} The frame count is video_sampling.num_frames (num_frames on /v1/video/chat)."
            raise APIError(400, message, "video_sampling.num_frames") from exc
        DECODE_SECONDS.observe(decoded.decode_s)
        SAMPLING_SECONDS.labels("uniform").observe(decoded.decode_s)
        used = frames_used("uniform", decoded.video_fps, decoded.indices)
        return PreparedVideo(decoded.frames, decoded.metadata, key, used)

    def selection_key(self, spec: SamplingSpec) -> str:
        """Everything a space-aware choice depends on besides the video: frames asked for, candidates, and the
        VGGT weights and precision that scored them."""
        assert self.geometry is not None
        config = self.geometry.config
        k = spec.num_frames or self.settings.default_num_frames
        return f"space_aware:k={k}:candidates={self.settings.space_aware_candidates}:{config.source}:{config.dtype}"

    async def _space_aware(
        self, data: bytes, spec: SamplingSpec, key: str, param: str, file_id: str | None
    ) -> PreparedVideo:
        if self.geometry is None:
            message = "Space-aware sampling is not available on this server (no VGGT weights)."
            raise APIError(400, message, "video_sampling.strategy")
        started = time.perf_counter()
        stored = None
        if file_id is not None and self.selections is not None:
            stored = await asyncio.to_thread(self.selections.selection, file_id, self.selection_key(spec))
        if stored is not None:  # another process (or this one, before a restart) chose already: no VGGT pass
            SAMPLING_CACHE.labels("stored_selection").inc()
            video = await self._in_pool(param, self._from_selection, data, stored, spec, key)
            SAMPLING_SECONDS.labels("space_aware").observe(time.perf_counter() - started)
            return video
        candidates: Candidates = await self._in_pool(param, self._decode_candidates, data)
        queued = time.perf_counter()
        k = spec.num_frames or self.settings.default_num_frames
        result = await self.geometry.select(candidates.vggt_input, k, param)
        if file_id is not None and self.selections is not None:
            chosen = StoredSelection([candidates.indices[p] for p in result.positions], len(candidates.indices))
            await asyncio.to_thread(self.selections.keep_selection, file_id, self.selection_key(spec), chosen)
        SPACE_AWARE_STAGE_SECONDS.labels("queue").observe(
            time.perf_counter() - queued - result.vggt_s - result.selection_s
        )
        SPACE_AWARE_STAGE_SECONDS.labels("vggt").observe(result.vggt_s)
        SPACE_AWARE_STAGE_SECONDS.labels("selection").observe(result.selection_s)
        video = await self._in_pool(param, self._finish_space_aware, candidates, result.positions, spec, key)
        SAMPLING_SECONDS.labels("space_aware").observe(time.perf_counter() - started)
        return video

    def _decode_candidates(self, data: bytes) -> Candidates:
        started = time.perf_counter()
        with open_video(data, self.limits) as video:
            indices = [int(i) for i in candidate_indices(video.info.num_frames, self.settings.space_aware_candidates)]
            frames = video.frames(indices)
            info = video.info
        DECODE_SECONDS.observe(time.perf_counter() - started)
        vggt_input = preprocess_frames_uint8(frames).contiguous().numpy()
        SPACE_AWARE_STAGE_SECONDS.labels("candidate_decode").observe(time.perf_counter() - started)
        return Candidates(info, indices, frames, vggt_input)

    def _from_selection(self, data: bytes, stored: StoredSelection, spec: SamplingSpec, key: str) -> PreparedVideo:
        """The frames of a stored selection, decoded by index (the same pixels as cutting them from the candidates'
        decode: decord decodes a frame identically whichever others are asked for) and resized alike."""
        with open_video(data, self.limits) as video:
            frames = video.frames(stored.indices)
            info = video.info
        chosen = Candidates(info, stored.indices, frames, np.empty(0, np.uint8))
        positions = list(range(len(stored.indices)))
        return self._finish_space_aware(chosen, positions, spec, key, out_of=stored.candidates)

    def _finish_space_aware(
        self, candidates: Candidates, positions: list[int], spec: SamplingSpec, key: str, out_of: int | None = None
    ) -> PreparedVideo:
        """The chosen frames, cut from the candidates' decode and resized by qwen-vl-utils' rule."""
        started = time.perf_counter()
        info = candidates.info
        indices = [candidates.indices[p] for p in positions]
        pixels = self._resize_space_aware(candidates.frames[positions], info, spec)
        SPACE_AWARE_STAGE_SECONDS.labels("resize").observe(time.perf_counter() - started)
        out_of = len(candidates.indices) if out_of is None else out_of  # from a stored selection: its candidates
        used = frames_used("space_aware", info.fps, indices, candidates=out_of)
        # fewer frames than asked is the original's rule for space-aware sampling, not an error: say so in the answer
        asked = spec.num_frames or self.settings.default_num_frames
        note = space_aware_note(info.num_frames, out_of, asked, len(indices))
        if note is not None:
            used.update(requested_frames=asked, note=note)
        # what vLLM's Qwen2.5-VL processor reads; it sets M-RoPE's time axis (the seed's rule unless asked)
        metadata = video_metadata(indices, info.fps, info.num_frames, info.duration_s, spec.time_axis)
        return _as_prepared(pixels, metadata, key, used)

    @staticmethod
    def _resize_space_aware(frames: np.ndarray, info: VideoInfo, spec: SamplingSpec):
        """Under the seed's rule, the two resizes the original's evaluation applies to saved frames
        (:mod:`sampling.frame_list`); otherwise one resize of the decoded frames."""
        uniform = spec.uniform()
        if spec.time_axis == "seed_exact":
            return resize_like_frame_list(frames, uniform)
        return resize_frames(frames, resized_size(len(frames), info.height, info.width, uniform))

    async def probe(self, source: bytes | Path, param: str) -> VideoInfo:
        """What the video is; the typed error, naming ``param``, when ``source`` (bytes or a path) is not a
        decodable video within the limits."""
        with naming(param):
            return await self.decoder.run(probe_video, source, self.limits)

    def shutdown(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.decoder.shutdown()


def _log_background_failure(task: asyncio.Task[PreparedVideo]) -> None:
    if not task.cancelled() and task.exception() is not None:
        LOG.warning("preparing an uploaded video in the background failed: %s", task.exception())

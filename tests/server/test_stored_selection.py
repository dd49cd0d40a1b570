"""A space-aware selection is stored with the upload: another process's preparer (another replica, an empty frame
cache) asked the same question about the same file runs no VGGT pass and hands the model the very same frames.
A real geometry worker (the tiny checkpoint's VGGT on CPU), no engine."""

from __future__ import annotations

import asyncio
from argparse import Namespace
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from media import encode_mp4
from prometheus_client import REGISTRY

from server.frames.geometry_worker import GeometryWorker, plan_geometry
from server.frames.video_prep import SamplingSpec, VideoPreparer
from server.runtime.settings import ServerSettings
from server.uploads.file_store import FileStore

CANDIDATES = 4


def _metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.fixture(scope="module")
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


@pytest.fixture(scope="module")
def worker(tiny_checkpoint: Path, loop: asyncio.AbstractEventLoop) -> Iterator[GeometryWorker]:
    settings = ServerSettings(space_aware_candidates=CANDIDATES)
    args = Namespace(
        model=str(tiny_checkpoint), tensor_parallel_size=1, pipeline_parallel_size=1, gpu_memory_utilization=0.9
    )
    plan = plan_geometry(args, settings)
    assert plan is not None
    worker = GeometryWorker(plan, max_queue=4, retry_after_s=2)
    loop.run_until_complete(worker.start())
    yield worker
    loop.run_until_complete(worker.close())


def test_a_stored_selection_gives_another_preparer_the_same_frames_without_a_pass(
    worker: GeometryWorker, loop: asyncio.AbstractEventLoop, tmp_path: Path
) -> None:
    frames = np.random.default_rng(11).integers(0, 255, (12, 48, 64, 3), dtype=np.uint8)
    video = encode_mp4(frames, tmp_path / "v.mp4", fps=6).read_bytes()
    settings = ServerSettings(space_aware_candidates=CANDIDATES)
    spec = SamplingSpec("space_aware", 2, None, 16, 3136, 12544, 10**8)
    uploads = tmp_path / "uploads"
    stored = FileStore(uploads, ttl_s=60, quota_bytes=1 << 20).add(video, "v.mp4", "user_data")

    def prepare_on_a_new_replica():
        preparer = VideoPreparer(settings, worker, selections=FileStore(uploads, ttl_s=60, quota_bytes=1 << 20))
        try:
            return loop.run_until_complete(preparer.prepare(video, stored.sha256, spec, "v", stored.id))
        finally:
            preparer.shutdown()

    passes = _metric("spatial_mllm_geometry_passes_total", outcome="done")
    reused = _metric("spatial_mllm_sampling_cache_total", result="stored_selection")
    first = prepare_on_a_new_replica()
    assert _metric("spatial_mllm_geometry_passes_total", outcome="done") == passes + 1
    assert len(list(uploads.glob(f"{stored.id}.*.selection"))) == 1
    second = prepare_on_a_new_replica()
    assert _metric("spatial_mllm_geometry_passes_total", outcome="done") == passes + 1  # no second pass
    assert _metric("spatial_mllm_sampling_cache_total", result="stored_selection") == reused + 1
    assert second.used == first.used and second.used["candidates"] == CANDIDATES
    assert np.array_equal(second.frames, first.frames) and second.metadata == first.metadata
    assert second.key == first.key  # so vLLM's caches see the same video too


def test_another_sampling_key_is_chosen_afresh(
    worker: GeometryWorker, loop: asyncio.AbstractEventLoop, tmp_path: Path
) -> None:
    frames = np.random.default_rng(12).integers(0, 255, (12, 48, 64, 3), dtype=np.uint8)
    video = encode_mp4(frames, tmp_path / "v.mp4", fps=6).read_bytes()
    store = FileStore(tmp_path / "uploads", ttl_s=60, quota_bytes=1 << 20)
    stored = store.add(video, "v.mp4", "user_data")
    preparer = VideoPreparer(ServerSettings(space_aware_candidates=CANDIDATES), worker, selections=store)
    passes = _metric("spatial_mllm_geometry_passes_total", outcome="done")
    try:
        for k in (2, 4):
            spec = SamplingSpec("space_aware", k, None, 16, 3136, 12544, 10**8)
            loop.run_until_complete(preparer.prepare(video, stored.sha256, spec, "v", stored.id))
    finally:
        preparer.shutdown()
    assert _metric("spatial_mllm_geometry_passes_total", outcome="done") == passes + 2
    assert len(list((tmp_path / "uploads").glob(f"{stored.id}.*.selection"))) == 2

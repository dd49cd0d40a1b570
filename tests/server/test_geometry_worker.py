"""The geometry worker of space-aware sampling, without an engine: a real worker process running the tiny
checkpoint's VGGT on CPU, its bounded queue, cancellation, crash recovery, the start-up memory arithmetic, and
space-aware selections stored with an upload (reused by another replica's preparer without a pass).

One worker (one process, loaded once) serves the module from a module-wide event loop; the crash test replaces
its process, as the supervisor does in production. Pass outcomes and restarts are read from the worker's own
counts, not the process-wide Prometheus series, so nothing else in the test process can move them.

A cancellation reaches the worker process between network blocks. The cancel tests hold that process stopped
(SIGSTOP) while the question leaves, so the cancellation is in before the pass's first block however loaded the
machine is: on a busy machine a pass left running can reach its last block before the cancellation arrives and
finish, which is correct behaviour but not what those tests check.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import signal
from argparse import Namespace
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from media import encode_mp4
from prometheus_client import REGISTRY

from sampling.cache import content_hash
from sampling.geometry import candidate_indices, preprocess_frames_uint8
from sampling.geometry_budget import GeometryShape, largest_chunk, pass_bytes, worst_case_bytes
from server.errors import APIError
from server.frames.geometry_worker import GeometryWorker, plan_geometry
from server.frames.video_prep import SamplingSpec, VideoPreparer
from server.runtime.settings import ServerSettings
from server.uploads.file_store import FileStore

CANDIDATES = 4


def _args(checkpoint: Path) -> Namespace:
    return Namespace(
        model=str(checkpoint), tensor_parallel_size=1, pipeline_parallel_size=1, gpu_memory_utilization=0.9
    )


def _images(seed: int) -> np.ndarray:
    """VGGT input of ``CANDIDATES`` random 48x64 frames (392x518 after the seed's preprocessing, like 4:3 video)."""
    frames = np.random.default_rng(seed).integers(0, 255, (CANDIDATES, 48, 64, 3), dtype=np.uint8)
    return preprocess_frames_uint8(frames).contiguous().numpy()


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
    plan = plan_geometry(_args(tiny_checkpoint), settings)
    assert plan is not None and plan.device == "cpu"
    worker = GeometryWorker(plan, max_queue=4, retry_after_s=2)
    loop.run_until_complete(worker.start())
    assert worker.ready
    yield worker
    loop.run_until_complete(worker.close())


@contextlib.contextmanager
def _paused(worker: GeometryWorker) -> Iterator[None]:
    """The worker process stopped (SIGSTOP) inside the block and resumed on leaving it, whatever happens."""
    pid = worker.pid
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


async def _until(condition) -> None:
    """Wait for a condition another task or process brings about (polled on the event loop)."""
    async with asyncio.timeout(120):
        while not condition():
            await asyncio.sleep(0.005)


def test_passes_run_one_at_a_time_and_all_answer(worker: GeometryWorker, loop: asyncio.AbstractEventLoop) -> None:
    async def four_at_once():
        return await asyncio.gather(*(worker.select(_images(seed), 2, "v") for seed in range(4)))

    results = loop.run_until_complete(four_at_once())
    assert all(len(r.positions) == 2 and set(r.positions) <= set(range(CANDIDATES)) for r in results)
    spans = sorted((r.started, r.finished) for r in results)
    assert all(later[0] >= earlier[1] for earlier, later in itertools.pairwise(spans))  # never overlap
    assert all(r.vggt_s > 0 and r.selection_s > 0 and r.chunk >= 1 for r in results)


def test_a_full_queue_answers_503_with_retry_after(worker: GeometryWorker, loop: asyncio.AbstractEventLoop) -> None:
    async def one_too_many():
        worker.max_queue = 1
        try:  # both start before the dispatcher runs: the first waits in the queue, the second finds it full
            return await asyncio.gather(
                worker.select(_images(10), 2, "v"), worker.select(_images(11), 2, "v"), return_exceptions=True
            )
        finally:
            worker.max_queue = 4

    first, second = loop.run_until_complete(one_too_many())
    assert len(first.positions) == 2
    assert isinstance(second, APIError) and second.status == 503 and second.retry_after == 2


def test_a_cancelled_request_stops_its_pass(worker: GeometryWorker, loop: asyncio.AbstractEventLoop) -> None:
    before = worker.passes.copy()

    async def leave_mid_pass():
        with _paused(worker):  # the pass is handed over, but cannot end before the request has left
            request = asyncio.ensure_future(worker.select(_images(20), 2, "v"))
            await _until(lambda: worker.busy)
            request.cancel()
            with pytest.raises(asyncio.CancelledError):
                await request
        await _until(lambda: not worker.busy)
        return await worker.select(_images(21), 2, "v")  # the worker is free for the next one

    assert len(loop.run_until_complete(leave_mid_pass()).positions) == 2
    assert worker.passes - before == {"cancelled": 1, "done": 1}


def test_a_killed_worker_fails_its_pass_with_503_and_is_replaced(
    worker: GeometryWorker, loop: asyncio.AbstractEventLoop
) -> None:
    restarts_before, restarts_shown = worker.restarts, _metric("spatial_mllm_geometry_restarts_total")
    old_pid = worker.pid

    async def kill_mid_pass():
        request = asyncio.ensure_future(worker.select(_images(30), 2, "v"))
        await _until(lambda: worker.busy)
        os.kill(old_pid, signal.SIGKILL)
        with pytest.raises(APIError) as caught:
            await request
        return caught.value, await worker.select(_images(31), 2, "v")

    error, after = loop.run_until_complete(kill_mid_pass())
    assert error.status == 503 and error.retry_after == 2
    assert len(after.positions) == 2
    assert worker.ready and worker.pid != old_pid
    assert worker.restarts == restarts_before + 1
    assert _metric("spatial_mllm_geometry_restarts_total") >= restarts_shown + 1  # and Prometheus shows it


def test_an_idle_worker_that_dies_is_replaced_even_when_a_reload_fails(
    worker: GeometryWorker, loop: asyncio.AbstractEventLoop, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No request needed to notice the death, and a reload that raises (here: the spawn itself fails, as when the
    machine is out of processes) is retried rather than ending the supervisor."""
    old_pid, real_spawn, spawns = worker.pid, worker._spawn, []

    async def first_spawn_fails() -> None:
        spawns.append(len(spawns))
        if len(spawns) == 1:
            raise OSError("Resource temporarily unavailable")
        await real_spawn()

    monkeypatch.setattr(worker, "_spawn", first_spawn_fails)
    os.kill(old_pid, signal.SIGKILL)
    loop.run_until_complete(_until(lambda: worker.ready and worker.pid != old_pid))
    assert spawns == [0, 1]
    assert len(loop.run_until_complete(worker.select(_images(40), 2, "v")).positions) == 2


def test_concurrent_new_videos_each_decode_once_and_say_which_frames(
    worker: GeometryWorker, loop: asyncio.AbstractEventLoop, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sampling.decode import DecodedVideo

    videos = []
    for seed in range(4):
        frames = np.random.default_rng(seed).integers(0, 255, (10, 48, 64, 3), dtype=np.uint8)
        videos.append(encode_mp4(frames, tmp_path / f"v{seed}.mp4", fps=5).read_bytes())
    decodes: list[list[int]] = []
    real_frames = DecodedVideo.frames

    def counted(self, indices):
        decodes.append(list(indices))
        return real_frames(self, indices)

    monkeypatch.setattr(DecodedVideo, "frames", counted)
    preparer = VideoPreparer(ServerSettings(space_aware_candidates=CANDIDATES), worker)
    spec = SamplingSpec("space_aware", 2, None, 16, 3136, 12544, 10**8)

    async def ask_all():
        return await asyncio.gather(*(preparer.prepare(v, content_hash(v), spec, "v") for v in videos))

    try:
        prepared = loop.run_until_complete(ask_all())
    finally:
        preparer.shutdown()
    candidates = [int(i) for i in candidate_indices(10, CANDIDATES)]
    assert sorted(decodes) == [candidates] * 4  # one decode per video: the candidates, nothing after
    for video in prepared:
        used = video.used
        assert used["strategy"] == "space_aware" and used["candidates"] == CANDIDATES
        assert len(used["indices"]) == 2 and set(used["indices"]) <= set(candidates)
        assert used["timestamps_s"] == [i / 5 for i in used["indices"]]
        assert video.frames.shape[0] == 2  # metadata indices follow the time axis rule (sampling.time_axis)


def _new_video_and_preparer(
    worker: GeometryWorker, tmp_path: Path, seed: int
) -> tuple[bytes, VideoPreparer, SamplingSpec]:
    """A 10-frame 48x64 video at 5 fps no other test uses, a preparer on ``worker``, and a 2-frame space-aware spec."""
    frames = np.random.default_rng(seed).integers(0, 255, (10, 48, 64, 3), dtype=np.uint8)
    video = encode_mp4(frames, tmp_path / "v.mp4", fps=5).read_bytes()
    preparer = VideoPreparer(ServerSettings(space_aware_candidates=CANDIDATES), worker)
    return video, preparer, SamplingSpec("space_aware", 2, None, 16, 3136, 12544, 10**8)


def test_an_upload_prepares_in_the_background_and_the_question_joins_it(
    worker: GeometryWorker, loop: asyncio.AbstractEventLoop, tmp_path: Path
) -> None:
    video, preparer, spec = _new_video_and_preparer(worker, tmp_path, seed=7)
    counts = {r: _metric("spatial_mllm_sampling_cache_total", result=r) for r in ("miss", "joined", "hit")}

    async def upload_then_ask():
        preparer.prepare_in_background(video, content_hash(video), spec)
        return await preparer.prepare(video, content_hash(video), spec, "v")

    try:
        prepared = loop.run_until_complete(upload_then_ask())
    finally:
        preparer.shutdown()
    assert prepared.used["candidates"] == CANDIDATES
    after = {r: _metric("spatial_mllm_sampling_cache_total", result=r) for r in counts}
    assert after["miss"] == counts["miss"]  # the question started nothing of its own...
    assert after["joined"] + after["hit"] == counts["joined"] + counts["hit"] + 1  # ...it joined or found the work


def test_start_up_refuses_a_budget_too_small_or_too_large(tiny_checkpoint: Path) -> None:
    args = _args(tiny_checkpoint)
    with pytest.raises(SystemExit, match="cannot hold one VGGT pass of 16 candidates"):
        plan_geometry(args, ServerSettings(space_aware_candidates=16, space_aware_budget_gib=1e-6))
    with pytest.raises(SystemExit, match="exceed cpu"):
        plan_geometry(args, ServerSettings(space_aware_budget_gib=1e6))


def test_vggt_1b_at_128_candidates_fits_its_default_budget_in_chunks() -> None:
    """VGGT-1B sizes (≈ 942M parameters in aggregator + point head), bf16, 4:3 video (392x518 VGGT input)."""
    shape = GeometryShape(embed_dim=1024, point_features=256, weight_elements=942_000_000)
    budget = worst_case_bytes(shape, 128, 2)  # the default budget: the largest input at one frame per step
    chunk = largest_chunk(shape, 128, 392, 518, budget, 2)
    assert chunk > 1 and pass_bytes(shape, 128, 392, 518, chunk, 2) <= budget
    assert pass_bytes(shape, 128, 392, 518, chunk + 1, 2) > budget or chunk == 16
    assert 4 < budget / 2**30 < 16  # the order of magnitude DEPLOY.md plans for


def test_a_pass_stops_only_when_the_last_question_leaves(
    worker: GeometryWorker, loop: asyncio.AbstractEventLoop, tmp_path: Path
) -> None:
    video, preparer, spec = _new_video_and_preparer(worker, tmp_path, seed=9)
    before = worker.passes.copy()

    async def scenario():
        ask = [asyncio.ensure_future(preparer.prepare(video, content_hash(video), spec, "v")) for _ in range(3)]
        await _until(lambda: worker.busy)
        ask[0].cancel()  # one of three leaves: the others still get their frames
        stayed = await asyncio.gather(*ask[1:])
        other = SamplingSpec("space_aware", 3, None, 16, 3136, 12544, 10**8)  # not cached yet: a new pass
        again = [asyncio.ensure_future(preparer.prepare(video, content_hash(video), other, "v")) for _ in range(2)]
        return stayed, again

    async def everyone_leaves(again):
        with _paused(worker):  # the pass cannot end before both questions have left
            await _until(lambda: worker.busy)
            (work,) = preparer._in_flight.values()
            for request in again:
                request.cancel()
            await asyncio.gather(*again, return_exceptions=True)
            await asyncio.wait([work.task])  # the shared work is cancelled, and with it the running pass
        await _until(lambda: not worker.busy)

    try:
        stayed, again = loop.run_until_complete(scenario())
        assert stayed[0] is stayed[1] and stayed[0].used["candidates"] == CANDIDATES
        assert worker.passes - before == {"done": 1}  # one leaving did not stop the pass
        loop.run_until_complete(everyone_leaves(again))
    finally:
        preparer.shutdown()
    assert worker.passes - before == {"done": 1, "cancelled": 1}
    assert not preparer._in_flight


# --- stored selections: a selection kept with the upload spares another replica the pass ---
# Another process's preparer (another replica, an empty frame cache) asked the same question about the same file
# runs no VGGT pass and hands the model the very same frames.


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

    passes = worker.passes["done"]
    reused = _metric("spatial_mllm_sampling_cache_total", result="stored_selection")
    first = prepare_on_a_new_replica()
    assert worker.passes["done"] == passes + 1
    assert len(list(uploads.glob(f"{stored.id}.*.selection"))) == 1
    second = prepare_on_a_new_replica()
    assert worker.passes["done"] == passes + 1  # no second pass
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
    passes = worker.passes["done"]
    try:
        for k in (2, 4):
            spec = SamplingSpec("space_aware", k, None, 16, 3136, 12544, 10**8)
            loop.run_until_complete(preparer.prepare(video, stored.sha256, spec, "v", stored.id))
    finally:
        preparer.shutdown()
    assert worker.passes["done"] == passes + 2
    assert len(list((tmp_path / "uploads").glob(f"{stored.id}.*.selection"))) == 2

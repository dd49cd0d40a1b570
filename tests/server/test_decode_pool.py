"""The supervised decoder pool: a hung or crashed worker costs one request (503 + Retry-After), is killed and
replaced, and the next job succeeds. Jobs are stdlib functions, so a spawned worker imports nothing of ours."""

from __future__ import annotations

import asyncio
import operator
import os
import signal
import time

import numpy as np
import pytest
from media import encode_mp4

from sampling.cache import content_hash
from sampling.errors import NotAVideoError
from server.errors import APIError
from server.frames.decode_jobs import start_worker
from server.frames.decode_pool import DecodePool, WorkerLost
from server.frames.video_prep import SamplingSpec, VideoPreparer
from server.runtime.settings import ServerSettings


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def _lose_a_worker(pool: DecodePool, fn, *args) -> tuple[WorkerLost, int]:
    await pool.run(operator.add, 1, 1)  # start the worker, learn its pid
    (pid,) = pool.worker_pids()
    with pytest.raises(WorkerLost) as caught:
        await pool.run(fn, *args)
    return caught.value, pid


@pytest.mark.parametrize(
    ("name", "fn", "args"),
    [
        ("hangs past the deadline", time.sleep, (3600,)),
        ("exits", os._exit, (3,)),
        ("is killed", signal.raise_signal, (signal.SIGKILL,)),
    ],
)
def test_a_lost_worker_is_a_503_and_the_next_job_succeeds(name: str, fn, args: tuple) -> None:
    pool = DecodePool(workers=1, timeout_s=2.0, retry_after_s=7)

    async def scenario():
        lost, pid = await _lose_a_worker(pool, fn, *args)
        return lost, pid, await pool.run(operator.add, 2, 3)

    try:
        lost, pid, after = asyncio.run(scenario())
        assert (lost.status, lost.retry_after) == (503, 7), name
        assert not _alive(pid) and pool.replaced == 1 and pool.worker_pids() != [pid]
        assert after == 5
    finally:
        pool.shutdown()


def test_a_jobs_own_exception_comes_back_and_the_worker_stays() -> None:
    pool = DecodePool(workers=1, timeout_s=30.0, retry_after_s=1)

    async def scenario():
        with pytest.raises(ValueError, match="invalid literal"):
            await pool.run(int, "not a number")
        large = bytes(range(256)) * (12 << 10)  # 3 MiB: sent raw after the pickled job
        assert await pool.run(operator.getitem, large, slice(-3, None)) == large[-3:]
        assert await pool.run(operator.add, b"small", large) == b"small" + large
        return await pool.run(operator.mul, 6, 7)

    try:
        assert asyncio.run(scenario()) == 42 and pool.replaced == 0 and len(pool.worker_pids()) == 1
    finally:
        pool.shutdown()


def test_the_preparer_decodes_in_the_pool_and_survives_a_crashed_worker(tmp_path) -> None:
    frames = np.random.default_rng(0).integers(0, 255, (8, 64, 64, 3), dtype=np.uint8)
    video = encode_mp4(frames, tmp_path / "v.mp4").read_bytes()
    preparer = VideoPreparer(ServerSettings(media_workers=1))
    spec = SamplingSpec("uniform", 4, None, 16, 3136, 12544, 10**8)

    async def scenario():
        with pytest.raises(APIError) as bad:
            await preparer.prepare(b"text, not a video" * 50, "d", spec, "video")
        with pytest.raises(APIError) as crashed:
            await preparer.decoder.run(os._exit, 1)
        prepared = await preparer.prepare(video, content_hash(video), spec, "video")
        return bad.value, crashed.value, prepared

    try:
        bad, crashed, prepared = asyncio.run(scenario())
        assert bad.status == 415 and bad.param == "video" and isinstance(bad.__cause__, NotAVideoError)
        assert crashed.status == 503 and crashed.retry_after == ServerSettings().retry_after_s
        assert prepared.frames.shape[0] == 4 and prepared.frames.flags.writeable
        assert preparer.decoder.replaced == 1 and len(preparer.decoder.worker_pids()) == 1
    finally:
        preparer.shutdown()


def test_a_decoder_worker_loads_neither_vllm_nor_the_web_stack() -> None:
    """A replacement worker is ready in seconds only if it imports its jobs' modules and nothing of the server."""
    pool = DecodePool(workers=1, timeout_s=60.0, retry_after_s=1, initializer=start_worker)
    loaded = "sorted(m for m in ('vllm', 'fastapi', 'server.errors') if m in __import__('sys').modules)"
    try:
        assert asyncio.run(pool.run(eval, loaded)) == []
    finally:
        pool.shutdown()

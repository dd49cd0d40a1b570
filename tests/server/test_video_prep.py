"""Video preparation without an engine: caps turned into sampling specs, the cache, and one computation for
concurrent requests about the same new video."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from media import encode_mp4

from sampling.cache import content_hash
from server.settings import ServerSettings
from server.video_prep import SamplingSpec, VideoPreparer


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    frames = np.random.default_rng(0).integers(0, 255, (12, 64, 96, 3), dtype=np.uint8)
    return encode_mp4(frames, tmp_path_factory.mktemp("v") / "v.mp4", fps=4).read_bytes()


def _spec(num_frames: int = 4, time_axis: str = "seed_exact") -> SamplingSpec:
    return SamplingSpec("uniform", num_frames, None, 16, 3136, 12544, 10**8, time_axis)


def test_concurrent_misses_compute_once_and_later_ones_hit(video: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    preparer = VideoPreparer(ServerSettings(), geometry_source=None)
    calls = []
    real = preparer._prepare_sync

    def counting(*args):
        calls.append(args[2])
        return real(*args)

    monkeypatch.setattr(preparer, "_prepare_sync", counting)
    digest = content_hash(video)

    async def scenario():
        first = await asyncio.gather(*(preparer.prepare(video, digest, _spec(), "v") for _ in range(6)))
        later = await preparer.prepare(video, digest, _spec(), "v")
        other = await preparer.prepare(video, digest, _spec(6), "v")
        real = await preparer.prepare(video, digest, _spec(time_axis="real_fps"), "v")
        return first, later, other, real

    first, later, other, real = asyncio.run(scenario())
    assert len(calls) == 3  # one per sampling spec (the time axis is part of it), however many asked at once
    assert all(item is first[0] for item in first) and later is first[0]
    assert first[0].frames.shape == (4, 56, 84, 3) and first[0].frames.dtype == np.uint8
    # the seed's rule: 2.0 fps over the sampled frames themselves, i.e. 1.0 s per temporal patch
    meta = first[0].metadata
    assert (meta["fps"], meta["total_num_frames"], meta["frames_indices"]) == (2.0, 4, [0, 1, 2, 3])
    # real timing: the source indices over the frames they span at the video's rate (4 of 12 at 4 fps)
    assert (real.metadata["fps"], real.metadata["frames_indices"]) == (4.0, [0, 4, 7, 11])
    assert np.array_equal(real.frames, first[0].frames)
    assert other.frames.shape[0] == 6
    preparer.shutdown()


def test_a_failure_reaches_every_waiter_and_is_not_cached(monkeypatch: pytest.MonkeyPatch) -> None:
    from sampling.errors import NotAVideoError

    preparer = VideoPreparer(ServerSettings(), geometry_source=None)

    async def scenario() -> list[BaseException | object]:
        return await asyncio.gather(
            *(preparer.prepare(b"not a video" * 100, "d", _spec(), "v") for _ in range(3)), return_exceptions=True
        )

    results = asyncio.run(scenario())
    assert all(isinstance(r, NotAVideoError) for r in results)
    assert len(preparer.cache) == 0 and not preparer._in_flight
    preparer.shutdown()

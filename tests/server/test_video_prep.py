"""Video preparation without an engine: caps turned into sampling specs, the cache, and one computation for
concurrent requests about the same new video."""

from __future__ import annotations

import asyncio
import json

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


def _spec(num_frames: int = 4) -> SamplingSpec:
    return SamplingSpec("uniform", num_frames, None, 16, 3136, 12544, 10**8)


def test_concurrent_misses_compute_once_and_later_ones_hit(video: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    preparer = VideoPreparer(ServerSettings())
    calls = []
    real = preparer._prepare_uniform

    def counting(*args):
        calls.append(args[2])
        return real(*args)

    monkeypatch.setattr(preparer, "_prepare_uniform", counting)
    digest = content_hash(video)

    async def scenario():
        first = await asyncio.gather(*(preparer.prepare(video, digest, _spec(), "v") for _ in range(6)))
        later = await preparer.prepare(video, digest, _spec(), "v")
        other = await preparer.prepare(video, digest, _spec(6), "v")
        return first, later, other

    first, later, other = asyncio.run(scenario())
    assert len(calls) == 2  # one per sampling spec, however many asked at once
    assert all(item is first[0] for item in first) and later is first[0]
    assert first[0].frames.shape == (4, 56, 84, 3) and first[0].frames.dtype == np.uint8
    assert first[0].metadata["frames_indices"] == [0, 4, 7, 11]
    assert other.frames.shape[0] == 6
    preparer.shutdown()


def test_a_failure_reaches_every_waiter_and_is_not_cached(monkeypatch: pytest.MonkeyPatch) -> None:
    from sampling.errors import NotAVideoError

    preparer = VideoPreparer(ServerSettings())

    async def scenario() -> list[BaseException | object]:
        return await asyncio.gather(
            *(preparer.prepare(b"not a video" * 100, "d", _spec(), "v") for _ in range(3)), return_exceptions=True
        )

    results = asyncio.run(scenario())
    assert all(isinstance(r, NotAVideoError) for r in results)
    assert len(preparer.cache) == 0 and not preparer._in_flight
    preparer.shutdown()


def test_the_frames_field_goes_into_the_first_stream_chunk_only() -> None:
    from server.chat import with_frames_in_first_chunk

    used = [{"strategy": "uniform", "indices": [0, 5], "timestamps_s": [0.0, 1.25]}]
    chunks = [{"object": "chat.completion.chunk", "choices": [{"delta": {"content": c}}]} for c in ("a", "b")]

    async def vllm_stream():
        for chunk in chunks:
            yield f"data: {json.dumps(chunk)}\n\n"
        yield "data: [DONE]\n\n"

    async def read() -> list[str]:
        return [event async for event in with_frames_in_first_chunk(vllm_stream(), used)]

    events = asyncio.run(read())
    assert json.loads(events[0][len("data: ") :]) == {**chunks[0], "video_frames": used}
    assert events[0].endswith("\n\n")
    assert events[1:] == [f"data: {json.dumps(chunks[1])}\n\n", "data: [DONE]\n\n"]

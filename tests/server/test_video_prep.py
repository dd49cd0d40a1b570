"""Video preparation without an engine: caps turned into sampling specs, the cache, and one computation for
concurrent requests about the same new video."""

from __future__ import annotations

import asyncio
import json

import numpy as np
import pytest
from media import encode_mp4

from sampling.cache import content_hash
from server.api.protocol import VideoSampling
from server.errors import APIError
from server.frames.media_connector import PreparedVideoStore
from server.frames.video_prep import SamplingSpec, VideoPreparer
from server.media.resolve import MediaResolver
from server.runtime.settings import ServerSettings
from server.uploads.file_store import FileStore


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    frames = np.random.default_rng(0).integers(0, 255, (12, 64, 96, 3), dtype=np.uint8)
    return encode_mp4(frames, tmp_path_factory.mktemp("v") / "v.mp4", fps=4).read_bytes()


def _spec(num_frames: int = 4, time_axis: str = "seed_exact") -> SamplingSpec:
    return SamplingSpec("uniform", num_frames, None, 16, 3136, 12544, 10**8, time_axis=time_axis)


def test_concurrent_misses_compute_once_and_later_ones_hit(video: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    preparer = VideoPreparer(ServerSettings())
    calls = []
    real = preparer._prepare_uniform

    async def counting(*args):
        calls.append(args[2])
        return await real(*args)

    monkeypatch.setattr(preparer, "_prepare_uniform", counting)
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


def test_a_question_by_file_id_reads_the_upload_only_when_its_frames_are_not_prepared(video: bytes, tmp_path) -> None:
    """The file's record holds its digest: the prepared-frame cache (or a preparation under way) is consulted before
    the upload is opened. Counted with the store's own read counter."""
    settings = ServerSettings(uploads_dir=tmp_path / "uploads")
    files = FileStore.configured(settings)
    preparer = VideoPreparer(settings)
    resolver = MediaResolver(settings, files, preparer, None, PreparedVideoStore())  # type: ignore[arg-type]
    stored, again = files.add(video, "a.mp4", "user_data"), files.add(video, "b.mp4", "user_data")
    spec = resolver.sampling_spec(VideoSampling(num_frames=4))

    async def ask(file_id: str, spec: SamplingSpec = spec) -> np.ndarray:
        question = [{"role": "user", "content": [{"type": "file", "file": {"file_id": file_id}}, {"type": "text"}]}]
        (ref,) = await resolver.rewrite_messages(question, spec, max_videos=1)
        frames = resolver.prepared.get(ref).frames
        resolver.prepared.release([ref])
        return frames

    async def scenario() -> list[tuple[int, int]]:
        counts = []
        first = await ask(stored.id)
        counts.append((files.reads, files.bytes_read))
        assert np.array_equal(await ask(stored.id), first)
        counts.append((files.reads, files.bytes_read))
        assert np.array_equal(await ask(again.id), first)  # another upload of the same bytes: same digest
        counts.append((files.reads, files.bytes_read))
        await ask(stored.id, resolver.sampling_spec(VideoSampling(num_frames=6)))  # new sampling: must decode
        counts.append((files.reads, files.bytes_read))
        upload_spec = resolver.sampling_spec(VideoSampling(num_frames=8))
        preparer.prepare_in_background(video, stored.sha256, upload_spec)  # as POST /v1/files with sampling does
        await ask(stored.id, upload_spec)  # joins the preparation under way (or finds it done)
        counts.append((files.reads, files.bytes_read))
        return counts

    size = len(video)
    assert asyncio.run(scenario()) == [(1, size), (1, size), (1, size), (2, 2 * size), (2, 2 * size)]
    preparer.shutdown()


def test_a_failure_reaches_every_waiter_naming_its_field_and_is_not_cached() -> None:
    from sampling.errors import NotAVideoError

    preparer = VideoPreparer(ServerSettings())

    async def scenario() -> list[BaseException | object]:
        return await asyncio.gather(
            *(preparer.prepare(b"not a video" * 100, "d", _spec(), f"v{i}") for i in range(3)), return_exceptions=True
        )

    results = asyncio.run(scenario())
    assert all(isinstance(r, APIError) and isinstance(r.__cause__, NotAVideoError) for r in results)
    assert [(r.status, r.param) for r in results] == [(415, "v0"), (415, "v1"), (415, "v2")]  # type: ignore[union-attr]
    assert len(preparer.cache) == 0 and not preparer._in_flight
    preparer.shutdown()


def test_the_frames_field_goes_into_the_first_stream_chunk_only() -> None:
    from server.api.chat import with_frames_in_first_chunk

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


@pytest.mark.parametrize(
    ("sampling", "prefix", "param", "says"),
    [
        (VideoSampling.model_construct(num_frames=1), "video_sampling.", "video_sampling.num_frames", "at least 2"),
        (VideoSampling(num_frames=65), "", "num_frames", "at most 64"),
        (VideoSampling(max_pixels=150_000), "video_sampling.", "video_sampling.max_pixels", "at least 200000"),
        (VideoSampling(num_frames=4, fps=1.0), "video_sampling.", "video_sampling", "either"),
        (VideoSampling(num_frames=4, fps=1.0), "", "fps", "either"),
    ],
)
def test_sampling_errors_name_the_request_field(sampling: VideoSampling, prefix: str, param: str, says: str) -> None:
    resolver = MediaResolver(ServerSettings(min_pixels_per_frame=200_000), None, None, None, None)  # type: ignore[arg-type]
    with pytest.raises(APIError) as caught:
        resolver.sampling_spec(sampling, prefix)
    assert caught.value.param == param and says in caught.value.message and "nframes" not in caught.value.message


def test_the_schema_bounds_agree_with_the_server_defaults() -> None:
    from pydantic import ValidationError

    defaults = ServerSettings()
    resolver = MediaResolver(defaults, None, None, None, None)  # type: ignore[arg-type]
    schema = VideoSampling.model_json_schema()["properties"]
    lowest_pixels = schema["max_pixels"]["anyOf"][0]["minimum"]
    lowest_frames = schema["num_frames"]["anyOf"][0]["minimum"]
    assert lowest_pixels == defaults.min_pixels_per_frame and lowest_frames == 2
    resolver.sampling_spec(VideoSampling(max_pixels=lowest_pixels, num_frames=lowest_frames))  # accepted
    with pytest.raises(ValidationError, match=str(lowest_pixels)):
        VideoSampling(max_pixels=50_000)

"""sampling.uniform against qwen-vl-utils 0.0.14 itself (decord backend): indices, sizes, sample fps, pixels."""

from __future__ import annotations

import itertools
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from media import encode_mp4
from torchvision.transforms import InterpolationMode
from torchvision.transforms import functional as tvf

from sampling.decode import open_video
from sampling.errors import (
    SamplingParameterError,
    TooManyFramesError,
    UnsupportedVideoError,
    VideoError,
    VideoTooShortError,
)
from sampling.limits import DecodeLimits
from sampling.uniform import (
    VIDEO_TOTAL_PIXELS,
    UniformSpec,
    resize_frames,
    resized_size,
    sample_uniform,
    sample_uniform_from,
    uniform_frame_indices,
)

# Largest |ours - qwen-vl-utils| pixel difference allowed (0..255 scale). Measured: 0.0 on every case below:
# the resize is the same float32 interpolate call torchvision makes, on the same memory layout.
PIXEL_BOUND = 0.0


@pytest.fixture()
def qwen(monkeypatch: pytest.MonkeyPatch):
    """qwen_vl_utils.vision_process forced onto its decord backend (torchcodec would win otherwise)."""
    from qwen_vl_utils import vision_process

    monkeypatch.setattr(vision_process, "FORCE_QWENVL_VIDEO_READER", "decord")
    vision_process.get_video_reader_backend.cache_clear()
    # our default total_pixels assumes qwen-vl-utils' default MODEL_SEQ_LEN (it reads the env at import)
    assert vision_process.MODEL_SEQ_LEN * 28 * 28 * 0.9 == VIDEO_TOTAL_PIXELS
    yield vision_process
    vision_process.get_video_reader_backend.cache_clear()


def gradient_video(path: Path, t: int, h: int, w: int, fps: int, seed: int = 0) -> Path:
    """Smooth gradients plus noise that move every frame: exercises the bicubic filter and frame identity."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    frames = np.stack([(x * 255 / w * 0.7 + y * 255 / h * 0.3 + 9 * i) % 256 for i in range(t)])[..., None]
    frames = frames + np.array([0, 60, 120]) + rng.integers(-30, 31, (t, h, w, 3))
    return encode_mp4(np.clip(frames, 0, 255).astype(np.uint8), path, fps=fps)


# (t, h, w, fps, spec): landscape, portrait, fps rule, short video with the fps rule, pixel caps, time range
PARITY_CASES = {
    "landscape-16": (40, 120, 160, 8, UniformSpec()),
    "portrait-16": (30, 160, 90, 6, UniformSpec()),
    "fps-rule-25fps": (50, 240, 320, 25, UniformSpec(nframes=None, fps=2.0)),
    "short-9-frames-fps-rule": (9, 64, 96, 4, UniformSpec(nframes=None)),
    "exactly-16-frames": (16, 72, 128, 30, UniformSpec()),
    "max-pixels-odd-nframes": (20, 480, 640, 10, UniformSpec(nframes=7, max_pixels=150_000)),
    "time-range-min-pixels": (24, 100, 120, 12, UniformSpec(nframes=6, video_start=0.3, video_end=1.5, min_pixels=2e5)),
    "fps-rule-caps": (60, 90, 200, 30, UniformSpec(nframes=None, fps=4.0, min_frames=5, max_frames=7)),
    "total-pixels": (32, 180, 320, 16, UniformSpec(nframes=16, total_pixels=16 * 200 * 28 * 28)),
    "resized": (12, 100, 150, 5, UniformSpec(nframes=4, resized_height=200, resized_width=250)),
}


@pytest.mark.parametrize("case", list(PARITY_CASES))
def test_matches_qwen_vl_utils_fetch_video(qwen, tmp_path: Path, case: str) -> None:
    t, h, w, fps, spec = PARITY_CASES[case]
    path = gradient_video(tmp_path / "v.mp4", t, h, w, fps)
    (expected, metadata), expected_fps = qwen.fetch_video(
        spec.qwen_element(str(path)), return_video_sample_fps=True, return_video_metadata=True
    )
    assert metadata["video_backend"] == "decord"

    ours = sample_uniform_from(path.read_bytes(), spec)
    assert list(ours.indices) == list(metadata["frames_indices"])
    assert ours.qwen_metadata() == metadata
    assert ours.sample_fps == expected_fps
    assert ours.frames.dtype == expected.dtype == torch.float32
    assert ours.frames.shape == expected.shape
    assert ours.frames_uint8.dtype == torch.uint8
    assert ours.frames.shape[-1] % 28 == 0 and ours.frames.shape[-2] % 28 == 0
    diff = (ours.frames - expected).abs().max().item()
    print(f"{case}: {tuple(expected.shape)} indices={list(ours.indices)} max |ours - qwen| = {diff}")
    assert diff <= PIXEL_BOUND


@pytest.mark.parametrize("degrees", [-90, 180])
def test_rotated_phone_video_matches_qwen_vl_utils(qwen, tmp_path: Path, degrees: int) -> None:
    """decord turns these itself in qwen-vl-utils; our own turn gives the same frames."""
    frames = np.asarray(torch.randint(0, 256, (20, 120, 160, 3), generator=torch.Generator().manual_seed(0)))
    path = tmp_path / "phone.mp4"
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 160, 120, "yuv420p"
        stream.set_display_rotation(degrees)
        for frame in frames.astype(np.uint8):
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    expected = qwen.fetch_video(UniformSpec().qwen_element(str(path)))
    ours = sample_uniform_from(path.read_bytes(), UniformSpec())
    assert ours.info.rotation == (-degrees) % 360
    assert (ours.info.height > ours.info.width) == (degrees == -90)
    assert ours.frames.shape == expected.shape
    assert (ours.frames - expected).abs().max().item() <= PIXEL_BOUND


def test_matches_process_vision_info_as_the_seed_calls_it(qwen, tmp_path: Path) -> None:
    path = gradient_video(tmp_path / "v.mp4", 37, 144, 176, 10)
    messages = [{"role": "user", "content": [{"type": "video", "video": str(path), "nframes": 16}]}]
    _, videos, kwargs = qwen.process_vision_info(messages, return_video_kwargs=True)
    with open_video(path) as video:
        ours = sample_uniform(video, UniformSpec(nframes=16))
    assert kwargs["fps"] == [ours.sample_fps]
    assert torch.equal(ours.frames, videos[0])


def test_short_video_fails_like_qwen_or_repeats_frames_when_padding(qwen, tmp_path: Path) -> None:
    path = gradient_video(tmp_path / "v.mp4", 9, 64, 96, 4)
    with pytest.raises(ValueError, match="nframes should in interval"):
        qwen.smart_nframes({"nframes": 16}, total_frames=9, video_fps=4.0)
    with pytest.raises(VideoTooShortError, match="9 frame"):
        sample_uniform_from(path, UniformSpec(nframes=16))

    padded = sample_uniform_from(path, UniformSpec(nframes=16, pad_short_videos=True))
    assert list(padded.indices) == torch.linspace(0, 8, 16).round().long().tolist()
    assert len(set(padded.indices)) == 9 and padded.frames.shape[0] == 16
    for i, j in itertools.combinations(range(16), 2):
        if padded.indices[i] == padded.indices[j]:
            assert torch.equal(padded.frames_uint8[i], padded.frames_uint8[j])


def test_one_frame_video(tmp_path: Path) -> None:
    path = gradient_video(tmp_path / "v.mp4", 1, 64, 64, 4)
    with pytest.raises(VideoTooShortError):
        sample_uniform_from(path, UniformSpec(nframes=None))
    assert sample_uniform_from(path, UniformSpec(nframes=None, pad_short_videos=True)).indices == (0, 0)


# --------------------------------------------------------------------------------------------------------
# the rules on grids, against qwen-vl-utils' own functions (no video needed)


def _qwen_indices(qwen, element: dict, total: int, fps: float) -> list[int] | None:
    try:
        start, end, count = qwen.calculate_video_frame_range(element, total, fps)
        n = qwen.smart_nframes(element, total_frames=count, video_fps=fps)
    except ValueError:
        return None
    return torch.linspace(start, end, n).round().long().tolist()


def _our_indices(spec: UniformSpec, total: int, fps: float) -> list[int] | None:
    try:
        return uniform_frame_indices(total, fps, spec)
    except VideoError:
        return None


GRID_SPECS = [
    *(UniformSpec(nframes=n) for n in (1, 2, 3, 4, 5, 7, 8, 15, 16, 17, 32, 33)),
    *(UniformSpec(nframes=None, fps=f) for f in (0.1, 0.5, 1.0, 2.0, 3.3, 30.0)),
    UniformSpec(nframes=None, min_frames=3, max_frames=9),
    UniformSpec(nframes=None, fps=8.0, max_frames=20),
    UniformSpec(nframes=16, video_start=1.25),
    UniformSpec(nframes=8, video_end=2.0),
    UniformSpec(nframes=None, video_start=0.5, video_end=3.3),
    UniformSpec(nframes=4, video_start=2.0, video_end=2.01),
    UniformSpec(nframes=4, video_start=-1.0, video_end=99.0),
]


def test_frame_indices_equal_qwen_on_a_grid(qwen) -> None:
    checked = raised = 0
    for spec in GRID_SPECS:
        element = spec.qwen_element("unused.mp4")
        for total, fps in itertools.product((1, 2, 3, 9, 15, 16, 17, 31, 100, 250, 901, 3000), (1.0, 4, 23.976, 30)):
            expected = _qwen_indices(qwen, element, total, fps)
            assert _our_indices(spec, total, fps) == expected, (spec, total, fps)
            checked += 1
            raised += expected is None
    assert raised and checked - raised > 500  # both outcomes are exercised


def test_frame_size_equals_qwen_on_a_grid(qwen, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run qwen-vl-utils' fetch_video with a stand-in reader and resize, so only its size arithmetic runs."""
    shape: dict[str, tuple[int, ...]] = {}
    sizes: list[list[int]] = []

    def fake_reader(element: dict):
        video = torch.zeros((1, 1, 1, 1), dtype=torch.uint8).expand(*shape["tchw"])  # no memory for big frames
        return video, {}, 1.0

    def fake_resize(video, size, **kwargs):
        sizes.append(list(size))
        return torch.zeros(1, dtype=torch.uint8)

    monkeypatch.setitem(qwen.VIDEO_READER_BACKENDS, "decord", fake_reader)
    monkeypatch.setattr(qwen.transforms.functional, "resize", fake_resize)
    specs = [
        UniformSpec(),
        UniformSpec(min_pixels=200_000),
        UniformSpec(max_pixels=150_000),
        UniformSpec(max_pixels=10_000_000),
        UniformSpec(total_pixels=3_000_000),
        UniformSpec(min_pixels=3136, max_pixels=20_000, total_pixels=1e9),
        UniformSpec(max_pixels=50_000),  # below the default min_pixels: both refuse
        UniformSpec(resized_height=300, resized_width=500),
        UniformSpec(resized_height=10, resized_width=7000),
    ]
    compared = 0
    for spec, t, (h, w) in itertools.product(
        specs,
        (2, 16, 64, 768),
        ((64, 96), (120, 160), (480, 640), (720, 1280), (1080, 1920), (1920, 1080), (30, 5000), (10, 10), (2, 2000)),
    ):
        shape["tchw"] = (t, 3, h, w)
        sizes.clear()
        try:
            qwen.fetch_video(spec.qwen_element("unused.mp4"))
            expected: tuple[int, int] | None = tuple(sizes[0])  # type: ignore[assignment]
        except (ValueError, AssertionError):
            expected = None
        try:
            ours: tuple[int, int] | None = resized_size(t, h, w, spec)
        except VideoError:
            ours = None
        assert ours == expected, (spec, t, h, w)
        compared += 1
    assert compared == 9 * 4 * 9


def test_resize_is_bit_identical_to_torchvision() -> None:
    rng = np.random.default_rng(0)
    for (h, w), size in [((64, 96), (56, 84)), ((50, 70), (112, 140)), ((121, 163), (28, 56)), ((84, 84), (84, 84))]:
        frames = rng.integers(0, 256, (3, h, w, 3), dtype=np.uint8)
        ours = resize_frames(frames, size)
        reference = tvf.resize(
            torch.tensor(frames).permute(0, 3, 1, 2),
            list(size),
            interpolation=InterpolationMode.BICUBIC,
            antialias=True,
        )
        assert ours.dtype == torch.uint8 and torch.equal(ours, reference)


# --------------------------------------------------------------------------------------------------------
# spec and limits


@pytest.mark.parametrize(
    "kwargs",
    [
        {"nframes": 16, "fps": 2.0},
        {"nframes": 0},
        {"nframes": None, "fps": 0.0},
        {"nframes": None, "fps": float("nan")},
        {"nframes": 8, "max_frames": 10},
        {"nframes": None, "max_frames": 1},
        {"min_pixels": -1},
        {"resized_height": 100},
        {"resized_height": 0, "resized_width": 100},
        {"video_start": float("inf")},
    ],
)
def test_bad_spec_is_rejected(kwargs: dict) -> None:
    with pytest.raises(SamplingParameterError):
        UniformSpec(**kwargs)


def test_errors_are_typed_for_impossible_requests() -> None:
    with pytest.raises(SamplingParameterError):
        uniform_frame_indices(100, 10.0, UniformSpec(nframes=1))  # rounds to 0 frames
    with pytest.raises(SamplingParameterError):
        uniform_frame_indices(100, 10.0, UniformSpec(video_start=5.0, video_end=4.0))
    with pytest.raises(SamplingParameterError):
        resized_size(16, 480, 640, UniformSpec(max_pixels=50_000))
    with pytest.raises(UnsupportedVideoError):
        resized_size(16, 2, 2000, UniformSpec())


def test_decode_limits_apply_to_sampling(tmp_path: Path) -> None:
    path = gradient_video(tmp_path / "v.mp4", 20, 64, 96, 10)
    with pytest.raises(TooManyFramesError):
        sample_uniform_from(path, UniformSpec(nframes=16), DecodeLimits(max_frames=8))
    assert sample_uniform_from(path, UniformSpec(nframes=8), DecodeLimits(max_frames=8)).frames.shape[0] == 8


def test_qwen_element_names_only_what_is_set() -> None:
    assert UniformSpec().qwen_element("a.mp4") == {"type": "video", "video": "a.mp4", "nframes": 16}
    assert UniformSpec(nframes=None, fps=1.5, max_pixels=1000).qwen_element("b") == {
        "type": "video",
        "video": "b",
        "fps": 1.5,
        "max_pixels": 1000,
    }

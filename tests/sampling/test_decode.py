"""sampling.decode: probing, decoding by index, bad input -> typed errors, limits, orientation, threads."""

from __future__ import annotations

import io
import struct
from concurrent.futures import ThreadPoolExecutor
from fractions import Fraction
from pathlib import Path

import av
import decord
import numpy as np
import pytest
from media import audio_only_mp4, empty_fragmented_mp4, encode_mp4
from PIL import Image

from sampling.decode import VideoInfo, open_video, probe_video
from sampling.errors import (
    CorruptVideoError,
    DecodedPixelsExceededError,
    EmptyVideoError,
    NotAVideoError,
    TooManyFramesError,
    UnsupportedCodecError,
    VideoError,
    VideoTooLargeError,
    VideoTooLongError,
)
from sampling.limits import DecodeLimits


def textured_frames(t: int, h: int, w: int, seed: int = 0) -> np.ndarray:
    """Asymmetric content: coarse random blocks (survive H.264) that change every frame."""
    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, 256, (t, (h + 7) // 8, (w + 7) // 8, 3), dtype=np.uint8)
    return np.ascontiguousarray(blocks.repeat(8, axis=1).repeat(8, axis=2)[:, :h, :w])


def write_mp4(path: Path, t: int = 10, h: int = 64, w: int = 96, fps: int = 4, seed: int = 0) -> Path:
    return encode_mp4(textured_frames(t, h, w, seed), path, fps=fps)


def write_oriented_mp4(path: Path, frames: np.ndarray, degrees: int, hflip: bool, vflip: bool) -> Path:
    """An mp4 whose display matrix says: turn ``degrees`` counter-clockwise, then mirror (PyAV's semantics)."""
    _, h, w, _ = frames.shape
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=4)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv444p"
        stream.set_display_rotation(degrees, hflip=hflip, vflip=vflip)
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_mp4(tmp_path_factory.mktemp("decode") / "v.mp4", t=10, h=64, w=96, fps=4)


# --------------------------------------------------------------------------------------------------------
# probing and decoding


@pytest.mark.parametrize(("t", "h", "w", "fps"), [(10, 64, 96, 4), (30, 48, 80, 25), (7, 96, 64, 30), (45, 32, 32, 15)])
def test_info_reads_frames_fps_duration_and_size(tmp_path: Path, t: int, h: int, w: int, fps: int) -> None:
    path = write_mp4(tmp_path / "v.mp4", t, h, w, fps)
    info = probe_video(path.read_bytes())
    assert info == VideoInfo(num_frames=t, fps=float(fps), duration_s=t / fps, width=w, height=h, rotation=0)


def test_variable_frame_rate_reports_the_average(tmp_path: Path) -> None:
    """15 frames 100 ms apart, then 15 frames 25 ms apart: fps is ffmpeg's stream average, not either rate."""
    path = tmp_path / "vfr.mp4"
    pts = np.concatenate([[0], np.cumsum([100] * 14 + [25] * 15)])
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
        stream.codec_context.time_base = Fraction(1, 1000)
        for frame, t in zip(textured_frames(30, 64, 64), pts, strict=True):
            video_frame = av.VideoFrame.from_ndarray(frame, format="rgb24")
            video_frame.pts, video_frame.time_base = int(t), Fraction(1, 1000)
            for packet in stream.encode(video_frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    with av.open(str(path)) as container:
        average = float(container.streams.video[0].average_rate)
    info = probe_video(path)
    assert info.num_frames == 30
    assert info.fps == pytest.approx(average, rel=1e-9)
    assert 10 < info.fps < 40
    assert info.duration_s == pytest.approx(30 / info.fps)


def test_frames_by_index_equal_decords_full_decode(video: Path) -> None:
    full = decord.VideoReader(str(video)).get_batch(list(range(10))).asnumpy()
    indices = [0, 5, 3, 3, 9, 1]
    with open_video(video.read_bytes()) as v:
        got = v.frames(indices)
    assert got.dtype == np.uint8 and got.shape == (6, 64, 96, 3)
    np.testing.assert_array_equal(got, full[indices])
    # and they are the right frames, in the asked order: close to the frames that were encoded
    source = textured_frames(10, 64, 96).astype(np.int16)
    errors = np.abs(got.astype(np.int16)[:, None] - source[None]).mean(axis=(2, 3, 4))  # [asked, encoded]
    assert errors.argmin(axis=1).tolist() == indices
    assert errors.min(axis=1).max() < 8


def test_bytes_bytearray_and_path_give_identical_results(video: Path) -> None:
    data = video.read_bytes()
    results = []
    for source in (data, bytearray(data), memoryview(data), video, str(video)):
        with open_video(source) as v:
            results.append((v.info, v.frames([0, 4, 9])))
    for info, frames in results[1:]:
        assert info == results[0][0]
        np.testing.assert_array_equal(frames, results[0][1])


def test_out_of_range_indices_raise_index_error(video: Path) -> None:
    with open_video(video) as v:
        for bad in ([10], [-1], [0, 11]):
            with pytest.raises(IndexError):
                v.frames(bad)
        assert v.frames([]).shape == (0, 64, 96, 3)


def test_missing_path_is_a_server_error_not_a_video_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        open_video(tmp_path / "nope.mp4")


def test_decoding_in_parallel_threads_matches_serial(video: Path, tmp_path: Path) -> None:
    other = write_mp4(tmp_path / "o.mp4", t=12, h=48, w=64, fps=6, seed=3)
    jobs = [(video.read_bytes(), [0, 3, 9]), (other.read_bytes(), [1, 6, 11]), (other, [0, 11]), (video, [2])] * 4

    def run(job: tuple[bytes | Path, list[int]]) -> np.ndarray:
        with open_video(job[0]) as v:
            return v.frames(job[1])

    serial = [run(job) for job in jobs]
    with ThreadPoolExecutor(max_workers=6) as pool:
        parallel = list(pool.map(run, jobs))
    for a, b in zip(serial, parallel, strict=True):
        np.testing.assert_array_equal(a, b)


# --------------------------------------------------------------------------------------------------------
# orientation


ORIENTATIONS = [(d, hf, vf) for d in (0, 90, 180, -90) for hf, vf in ((False, False), (True, False), (False, True))]


@pytest.mark.parametrize(("degrees", "hflip", "vflip"), ORIENTATIONS)
def test_frames_come_out_as_displayed(tmp_path: Path, degrees: int, hflip: bool, vflip: bool) -> None:
    raw = textured_frames(3, 48, 80, seed=7)
    path = write_oriented_mp4(tmp_path / "r.mp4", raw, degrees, hflip, vflip)
    with av.open(str(path)) as container:  # ffmpeg's own reading of the matrix (counter-clockwise degrees)
        ffmpeg_ccw = next(container.decode(video=0)).rotation
    expected = np.rot90(raw, k=degrees // 90, axes=(1, 2))  # PyAV: turn counter-clockwise, then mirror
    if hflip:
        expected = expected[:, :, ::-1]
    if vflip:
        expected = expected[:, ::-1]

    with open_video(path.read_bytes()) as v:
        got = v.frames([0, 1, 2])
        info = v.info
    assert got.shape == expected.shape
    assert (info.height, info.width) == expected.shape[1:3]
    assert info.rotation == (-ffmpeg_ccw) % 360
    assert info.mirrored == (hflip != vflip)
    error = np.abs(got.astype(np.int16) - expected.astype(np.int16)).mean()
    assert error < 6, f"mean abs error {error:.1f}: frames not oriented as displayed"


@pytest.mark.parametrize("degrees", [90, 180, -90])
@pytest.mark.parametrize(("h", "w"), [(64, 96), (120, 160)])
def test_turned_frames_equal_decords_own_turn(tmp_path: Path, degrees: int, h: int, w: int) -> None:
    """Where decord's own rotation works, ours is bit-identical to it, so qwen-vl-utils parity holds."""
    path = write_oriented_mp4(tmp_path / "r.mp4", textured_frames(3, h, w), degrees, False, False)
    with open_video(path) as v:
        got = v.frames([0, 2])
    np.testing.assert_array_equal(got, decord.VideoReader(str(path)).get_batch([0, 2]).asnumpy())


def test_turned_video_decord_cannot_batch_still_decodes(tmp_path: Path) -> None:
    """decord's own turn breaks get_batch for some widths (here 80x48 shown as 48x80); ours does not."""
    raw = textured_frames(3, 48, 80)
    path = write_oriented_mp4(tmp_path / "r.mp4", raw, -90, False, False)
    with pytest.raises(decord.DECORDError):
        decord.VideoReader(str(path)).get_batch([0, 1])
    with open_video(path) as v:
        got = v.frames([0, 1])
    assert got.shape == (2, 80, 48, 3)
    assert np.abs(got.astype(np.int16) - np.rot90(raw[:2], k=-1, axes=(1, 2))).mean() < 6


def test_portrait_phone_video_marker_lands_top_right(tmp_path: Path) -> None:
    raw = np.zeros((2, 64, 96, 3), np.uint8)
    raw[:, :16, :16] = 255  # white square, top-left as coded
    path = write_oriented_mp4(tmp_path / "p.mp4", raw, -90, False, False)  # phones: 90 degrees clockwise
    with open_video(path) as v:
        frame = v.frames([0])[0]
        assert (v.info.width, v.info.height, v.info.rotation) == (64, 96, 90)
    rows, cols = np.nonzero(frame[..., 0] > 128)
    assert rows.max() < 20 and cols.min() > 44  # top-right of the 64-wide, 96-high displayed frame


# --------------------------------------------------------------------------------------------------------
# bad input


def _image(fmt: str) -> bytes:
    out = io.BytesIO()
    Image.fromarray(textured_frames(1, 32, 32)[0]).save(out, format=fmt)
    return out.getvalue()


def _faststart_mp4(path: Path) -> bytes:
    """moov before mdat, so a truncation keeps the index and loses frames."""
    frames = textured_frames(12, 64, 96)
    with av.open(str(path), mode="w", options={"movflags": "faststart"}) as container:
        stream = container.add_stream("libx264", rate=4)
        stream.width, stream.height, stream.pix_fmt = 96, 64, "yuv420p"
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path.read_bytes()


def _zero_samples(data: bytes) -> bytes:
    """The same mp4 with every sample table emptied: a video track that holds no frames."""
    out = bytearray(data)
    for box, count_offset in ((b"stsz", 8), (b"stts", 4), (b"stsc", 4), (b"stco", 4), (b"stss", 4), (b"ctts", 4)):
        at = out.find(box)
        if at >= 0:
            out[at + 4 + count_offset : at + 8 + count_offset] = struct.pack(">I", 0)
    return bytes(out)


def _no_tracks(path: Path) -> bytes:
    """What PyAV writes for a stream that never got a frame: an mp4 without a single track."""
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=4)
        stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
        container.start_encoding()
    return path.read_bytes()


def _cut(data: bytes, fraction: float) -> bytes:
    return data[: int(len(data) * fraction)]


def _overwrite_middle(data: bytes, n: int = 2000) -> bytes:
    middle = len(data) // 2
    return data[:middle] + bytes(n) + data[middle + n :]


BAD_INPUTS = {
    "empty bytes": (lambda d: b"", EmptyVideoError),
    "text": (lambda d: b"this is a text file, not a video\n" * 50, NotAVideoError),
    "utf-8 text": (lambda d: "vidéo ünïcode — ".encode() * 40, NotAVideoError),
    "random bytes": (lambda d: np.random.default_rng(1).bytes(20_000), NotAVideoError),
    "png": (lambda d: _image("PNG"), NotAVideoError),
    "jpeg": (lambda d: _image("JPEG"), NotAVideoError),
    "gif": (lambda d: _image("GIF"), NotAVideoError),
    "webp": (lambda d: _image("WEBP"), NotAVideoError),
    "audio-only m4a": (lambda d: audio_only_mp4(d / "a.m4a"), NotAVideoError),
    "audio-only mkv": (lambda d: audio_only_mp4(d / "a.mkv"), NotAVideoError),
    "truncated mp4 (index at end)": (lambda d: _cut(write_mp4(d / "t.mp4").read_bytes(), 2 / 3), CorruptVideoError),
    "truncated mp4 (index first)": (lambda d: _cut(_faststart_mp4(d / "f.mp4"), 2 / 3), CorruptVideoError),
    "mp4 header + garbage": (
        lambda d: write_mp4(d / "g.mp4").read_bytes()[:48] + np.random.default_rng(0).bytes(20_000),
        CorruptVideoError,
    ),
    "zeros inside the frames": (lambda d: _overwrite_middle(_faststart_mp4(d / "m.mp4")), CorruptVideoError),
    "truncated mkv": (lambda d: write_mp4(d / "v.mkv").read_bytes()[:600], CorruptVideoError),
    "video track without samples": (lambda d: _zero_samples(_faststart_mp4(d / "z.mp4")), EmptyVideoError),
    "fragmented mp4 without fragments": (lambda d: empty_fragmented_mp4(d / "e.mp4"), EmptyVideoError),
    "mp4 without tracks": (lambda d: _no_tracks(d / "n.mp4"), EmptyVideoError),
}


@pytest.mark.parametrize("name", list(BAD_INPUTS))
@pytest.mark.parametrize("as_path", [False, True], ids=["bytes", "path"])
def test_bad_input_raises_its_typed_error(tmp_path: Path, name: str, as_path: bool) -> None:
    make, expected = BAD_INPUTS[name]
    work = tmp_path / "work"
    work.mkdir()
    data = make(work)
    source: bytes | Path = data
    if as_path:
        source = tmp_path / "upload.mp4"
        source.write_bytes(data)
    with pytest.raises(VideoError) as caught, open_video(source) as v:
        v.frames(range(v.info.num_frames))  # some damage only shows when frames are decoded
    assert type(caught.value) is expected, f"{name}: {type(caught.value).__name__}: {caught.value}"
    message = str(caught.value)
    assert message and str(tmp_path) not in message and "/" not in message and ".cc" not in message


@pytest.mark.parametrize("name", ["av1.mp4", "av1.webm"])
def test_a_codec_the_decoder_lacks_is_named(tmp_path: Path, name: str) -> None:
    frames = np.random.default_rng(0).integers(0, 255, (4, 64, 64, 3), dtype=np.uint8)
    data = encode_mp4(frames, tmp_path / name, codec="libsvtav1").read_bytes()
    with pytest.raises(UnsupportedCodecError) as caught:
        open_video(data)
    assert "AV1" in str(caught.value) and "not supported" in str(caught.value)
    assert caught.value.status == 415 and "no video stream" not in str(caught.value)


def test_error_statuses_and_codes() -> None:
    expected = {
        NotAVideoError: 415,
        CorruptVideoError: 400,
        EmptyVideoError: 400,
        VideoTooLargeError: 413,
        VideoTooLongError: 400,
        DecodedPixelsExceededError: 413,
        TooManyFramesError: 400,
        UnsupportedCodecError: 415,
    }
    for cls, status in expected.items():
        assert issubclass(cls, VideoError) and issubclass(cls, ValueError)
        assert cls.status == status and cls.code and cls.code != VideoError.code


# --------------------------------------------------------------------------------------------------------
# limits


def test_byte_limit_is_checked_before_decoding(video: Path) -> None:
    size = video.stat().st_size
    assert probe_video(video, DecodeLimits(max_bytes=size)).num_frames == 10
    for source in (video, video.read_bytes()):
        with pytest.raises(VideoTooLargeError, match="MiB"):
            open_video(source, DecodeLimits(max_bytes=size - 1))
    with pytest.raises(VideoTooLargeError):  # not even sniffed: random bytes over the limit are "too large"
        open_video(b"\0" * 100, DecodeLimits(max_bytes=99))


def test_duration_limit(video: Path) -> None:  # 10 frames at 4 fps = 2.5 s
    assert probe_video(video, DecodeLimits(max_duration_s=2.5)).duration_s == 2.5
    with pytest.raises(VideoTooLongError, match=r"2\.5 s"):
        open_video(video, DecodeLimits(max_duration_s=2.4))


def test_frame_count_and_pixel_limits_apply_before_decoding(video: Path) -> None:
    with open_video(video, DecodeLimits(max_frames=4, max_decoded_pixels=3 * 64 * 96)) as v:
        assert v.frames([0, 1, 2]).shape == (3, 64, 96, 3)
        with pytest.raises(DecodedPixelsExceededError):
            v.frames([0, 1, 2, 3])
        with pytest.raises(TooManyFramesError):
            v.frames([0, 1, 2, 3, 4])


def test_limits_reject_non_positive_values() -> None:
    with pytest.raises(ValueError):
        DecodeLimits(max_bytes=0)
    with pytest.raises(ValueError):
        DecodeLimits(max_duration_s=-1)

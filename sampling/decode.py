"""Video bytes (or a path) -> RGB frames with decord, decoding only the frames asked for.

Why decord: it is what qwen-vl-utils uses, so frames match the seed bit for bit. Bytes go to decord as an
in-memory file (decord copies them into its own memory reader), never through temporary files.

What decord does not do, done here:

* **Typed errors.** decord raises ``RuntimeError``/``DECORDError`` with paths in the text for every failure.
  The input is sniffed (magic bytes, and the MP4 box tree) to tell "not a video" (415) from "a damaged video"
  (400) and "no frames" (400); see :mod:`sampling.errors`.
* **Orientation, reliably.** decord 0.6.0 turns frames by the MP4/MOV display matrix itself, but its turned
  frames break for some widths (``get_batch`` fails on, e.g., a 80x48 video turned to 48x80) and it ignores
  mirrors. So the matrix (``tkhd`` x ``mvhd``) is read here and, when it turns or mirrors, reset to identity in
  the copy decord reads; frames are then turned/mirrored with numpy. Where decord's own turn works the result is
  bit-identical to it (tested), so frames still match qwen-vl-utils. Only axis-aligned matrices (the 8
  turn/mirror combinations) are applied, as ffmpeg does. Other containers (Matroska/WebM, AVI, ...) carry no
  standard rotation; their frames stay as decoded.
* **Limits** (:class:`sampling.limits.DecodeLimits`): bytes before opening, duration after probing, frame count
  and decoded pixels before decoding.

Frame rate: decord's ``get_avg_fps()`` (ffmpeg's average frame rate of the stream, i.e. frames over duration
for variable-frame-rate video), the value qwen-vl-utils uses; ``duration_s`` is ``num_frames / fps``, the same
clock qwen-vl-utils uses to map seconds to frame indices.

Threads: every :func:`open_video` call makes its own decord reader; a :class:`DecodedVideo` must stay on the
thread that uses it (open, read, close in one worker call). Nothing is shared between calls.
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import decord
import numpy as np

from sampling.errors import CorruptVideoError, EmptyVideoError, NotAVideoError, UnsupportedCodecError
from sampling.limits import DecodeLimits
from sampling.mp4_boxes import (
    IDENTITY_MATRIX,
    UPRIGHT,
    Mp4Probe,
    Orientation,
    codec_name,
    matroska_video_codec,
    probe_mp4,
)

VideoSource = bytes | bytearray | memoryview | str | os.PathLike[str]

_HEAD_BYTES = 512


@dataclass(frozen=True)
class VideoInfo:
    """What a video is, as displayed. ``rotation`` is clockwise degrees (0/90/180/270) applied for display.

    Also the ``video`` field of an upload's file object (:class:`server.api.protocol.FileObject`), as these fields."""

    num_frames: int
    fps: float
    duration_s: float
    width: int
    height: int
    rotation: int = 0
    mirrored: bool = False


class DecodedVideo:
    """An opened video: probed :attr:`info`, frames decoded on demand. One thread, one request; then close."""

    def __init__(self, reader: decord.VideoReader, info: VideoInfo, orientation: Orientation, limits: DecodeLimits):
        self._reader: decord.VideoReader | None = reader
        self._orientation = orientation
        self._limits = limits
        self.info = info

    def frames(self, indices: Sequence[int]) -> np.ndarray:
        """Frames at ``indices`` (any order, repeats allowed) as uint8 ``[T, H, W, 3]`` RGB, as displayed.

        Indices must lie in ``[0, num_frames)``; anything else is a caller bug and raises ``IndexError``
        (samplers derive indices from ``info.num_frames``). Raises :class:`TooManyFramesError` or
        :class:`DecodedPixelsExceededError` before decoding, :class:`CorruptVideoError` if decoding fails.
        """
        if self._reader is None:
            raise RuntimeError("DecodedVideo is closed")
        idx = [int(i) for i in indices]
        n = self.info.num_frames
        bad = [i for i in idx if not 0 <= i < n]
        if bad:
            raise IndexError(f"frame indices {bad[:5]} outside [0, {n})")
        self._limits.check_frames(len(idx), self.info.height, self.info.width)
        if not idx:
            return np.zeros((0, self.info.height, self.info.width, 3), np.uint8)
        try:
            batch = _to_numpy(self._reader.get_batch(idx))
        except MemoryError:
            raise
        except Exception as exc:
            raise CorruptVideoError("The video is damaged: some of its frames cannot be decoded.") from exc
        return self._orientation.apply(batch)

    def close(self) -> None:
        """Free the decoder now rather than at garbage collection (it holds the whole upload in memory)."""
        self._reader = None

    def __enter__(self) -> DecodedVideo:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def decoder_threads() -> int:
    """One decoder thread per usable core, at most 8: on 2 cores ffmpeg's own choice (0, i.e. cores + 1) measured
    ~11% slower than 2 (``bench.bench_decode --decord-threads``); frames are identical whatever the count."""
    return max(1, min(len(os.sched_getaffinity(0)), 8))


def silence_decoder_log() -> None:
    """Stop ffmpeg/decord from printing their own error lines to stderr (process-wide): every failure already
    reaches the caller as a typed error with a message written for people."""
    decord.logging.set_level(decord.logging.QUIET)


def open_video(
    source: VideoSource, limits: DecodeLimits | None = None, *, num_threads: int | None = None
) -> DecodedVideo:
    """Open and probe a video from bytes or a local path; raises the typed errors of :mod:`sampling.errors`.

    ``num_threads`` is decord's decoder thread count (``None``: :func:`decoder_threads`; 0: ffmpeg's choice,
    what qwen-vl-utils uses). A missing path raises ``FileNotFoundError``: a server bug, not the caller's.
    """
    limits = limits or DecodeLimits()
    data, path = _split_source(source)
    size = len(data) if data is not None else os.stat(path).st_size
    limits.check_bytes(size)
    if size == 0:
        raise EmptyVideoError("The upload is empty (0 bytes); send a video file.")
    with _open_binary(data, path) as fh:
        head = fh.read(_HEAD_BYTES)
        kind = _sniff(head)
        if kind.startswith("image:"):
            raise NotAVideoError(f"The upload is a {kind[6:]} image, not a video.")
        mp4 = probe_mp4(fh) if kind == "video:mp4" else None
        codec = mp4.codec if mp4 is not None else matroska_video_codec(fh) if kind == "video:matroska" else None
    orientation = mp4.orientation if mp4 is not None else UPRIGHT

    decord_input: Any = _WholeBuffer(data) if data is not None else path
    if mp4 is not None and mp4.matrix_offsets:  # decord must not turn frames itself (see the module docstring)
        buffer = bytearray(data if data is not None else Path(path).read_bytes())  # type: ignore[arg-type]
        for offset in mp4.matrix_offsets:
            buffer[offset : offset + 36] = IDENTITY_MATRIX
        decord_input = _WholeBuffer(buffer)
    try:
        threads = decoder_threads() if num_threads is None else num_threads
        reader = decord.VideoReader(decord_input, num_threads=threads)
    except AssertionError as exc:  # decord asserts a positive frame count
        raise EmptyVideoError("The video has no frames.") from exc
    except MemoryError:
        raise
    except Exception as exc:
        raise _open_failure(exc, kind, mp4, codec) from exc
    del decord_input

    num_frames = len(reader)
    if num_frames <= 0:
        raise EmptyVideoError("The video has no frames.")
    fps = float(reader.get_avg_fps())
    if not math.isfinite(fps) or fps <= 0:
        raise CorruptVideoError("The video's frame rate is missing or invalid.")
    duration = num_frames / fps
    limits.check_duration(duration)
    try:
        height, width = _to_numpy(reader.next()).shape[:2]  # decord has no size accessor: decode frame 0
    except Exception as exc:
        raise CorruptVideoError("The video is damaged: its first frame cannot be decoded.") from exc
    if orientation.transpose:
        height, width = width, height
    info = VideoInfo(num_frames, fps, duration, width, height, orientation.rotation, orientation.mirrored)
    return DecodedVideo(reader, info, orientation, limits)


def probe_video(source: VideoSource, limits: DecodeLimits | None = None) -> VideoInfo:
    """Open, check that the first frame decodes, and return :class:`VideoInfo` (e.g. to validate an upload)."""
    with open_video(source, limits) as video:
        return video.info


# --------------------------------------------------------------------------------------------------------
# sources and error classification


def _split_source(source: VideoSource) -> tuple[bytes | None, str | None]:
    if isinstance(source, bytes):
        return source, None
    if isinstance(source, bytearray | memoryview):
        return bytes(source), None
    if isinstance(source, str | os.PathLike):
        return None, os.fspath(source)
    raise TypeError(f"video source must be bytes or a path, got {type(source).__name__}")


class _WholeBuffer:
    """The file-like decord wants for in-memory input: it calls ``read()`` once and copies the result."""

    def __init__(self, buffer: bytes | bytearray) -> None:
        self._buffer = buffer

    def read(self, *_: object) -> bytes | bytearray:
        return self._buffer


def _open_binary(data: bytes | None, path: str | None) -> BinaryIO:
    return io.BytesIO(data) if data is not None else Path(path).open("rb")  # type: ignore[arg-type]


def _to_numpy(arr: Any) -> np.ndarray:
    """decord's output under any bridge (native NDArray, or a torch tensor if someone set the torch bridge)."""
    if hasattr(arr, "asnumpy"):
        return arr.asnumpy()
    if hasattr(arr, "numpy"):
        return arr.numpy()
    return np.asarray(arr)


_IMAGE_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"\xff\xd8\xff", "JPEG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
)
_ISOBMFF_TOP = {b"ftyp", b"moov", b"mdat", b"free", b"skip", b"wide", b"pnot", b"styp", b"sidx", b"moof"}
_IMAGE_BRANDS = {b"heic": "HEIC", b"heix": "HEIC", b"mif1": "HEIF", b"avif": "AVIF"}


def _sniff(head: bytes) -> str:
    """Coarse kind from magic bytes: ``image:<name>``, ``video:<container>``, ``audio``, ``text`` or ``unknown``."""
    for magic, name in _IMAGE_MAGIC:
        if head.startswith(magic):
            return f"image:{name}"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image:WebP"
    if head[:2] == b"BM" and head[6:10] == bytes(4):  # BMP: magic, file size, then reserved zeros
        return "image:BMP"
    if head[4:8] in _ISOBMFF_TOP:
        if head[4:8] == b"ftyp" and head[8:12] in _IMAGE_BRANDS:
            return f"image:{_IMAGE_BRANDS[head[8:12]]}"
        return "video:mp4"
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return "video:matroska"
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return "video:avi"
    if head.startswith((b"FLV", b"\x00\x00\x01\xba", b"\x30\x26\xb2\x75\x8e\x66\xcf\x11", b"OggS")):
        return "video:other"
    if len(head) > 188 and head[0] == 0x47 and head[188] == 0x47:
        return "video:mpegts"
    if head.startswith((b"ID3", b"fLaC")) or (head[:4] == b"RIFF" and head[8:12] == b"WAVE"):
        return "audio"
    if _looks_like_text(head):
        return "text"
    return "unknown"


def _looks_like_text(head: bytes) -> bool:
    """Printable UTF-8, allowing a multibyte character cut off at the end of ``head``."""
    for cut in range(4):
        try:
            text = head[: len(head) - cut].decode("utf-8")
        except UnicodeDecodeError:
            continue
        return bool(text) and all(ch.isprintable() or ch in "\r\n\t" for ch in text)
    return False


def _open_failure(exc: Exception, kind: str, mp4: Mp4Probe | None, codec: str | None) -> Exception:
    """Turn a decord open failure into a typed error, using what the bytes look like.

    ffmpeg reports a video track it has no decoder for as "no video stream"; when the container names the
    track's codec, the caller hears which codec it is.
    """
    no_stream = "cannot find video stream" in str(exc)
    if mp4 is not None and mp4.empty:
        return EmptyVideoError("The video has no frames.")
    if no_stream and codec is not None:
        return UnsupportedCodecError(
            f"The video's codec, {codec_name(codec)}, is not supported by this server's decoder; "
            "re-encode it as H.264 (e.g. ffmpeg -i in.mp4 -c:v libx264 out.mp4)."
        )
    if no_stream or (mp4 is not None and not mp4.has_video):
        return NotAVideoError("The upload has no video stream (for example, an audio-only file).")
    if kind.startswith("video:"):
        return CorruptVideoError("The video is truncated or damaged and cannot be decoded.")
    if kind == "audio":
        return NotAVideoError("The upload is an audio file, not a video.")
    if kind == "text":
        return NotAVideoError("The upload is text, not a video.")
    return NotAVideoError("The upload is not a video format this server can decode.")

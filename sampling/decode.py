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
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import decord
import numpy as np

from sampling.errors import CorruptVideoError, EmptyVideoError, NotAVideoError
from sampling.limits import DecodeLimits

VideoSource = bytes | bytearray | memoryview | str | os.PathLike[str]

_HEAD_BYTES = 512
_MAX_MOOV_BYTES = 64 << 20  # sample tables of a multi-hour video stay far below this


@dataclass(frozen=True)
class VideoInfo:
    """What a video is, as displayed. ``rotation`` is clockwise degrees (0/90/180/270) applied for display."""

    num_frames: int
    fps: float
    duration_s: float
    width: int
    height: int
    rotation: int = 0
    mirrored: bool = False


@dataclass(frozen=True)
class _Orientation:
    """An axis-aligned display matrix: coded -> displayed is transpose, then flips.

    ``rotation`` is ffmpeg's reading of the matrix, ``atan2(b, a)``, in clockwise degrees; ``mirrored`` is a
    negative determinant.
    """

    transpose: bool = False
    flip_h: bool = False
    flip_v: bool = False
    rotation: int = 0
    mirrored: bool = False

    @property
    def upright(self) -> bool:
        return not (self.transpose or self.flip_h or self.flip_v)

    def apply(self, frames: np.ndarray) -> np.ndarray:
        """Coded frames [T, H, W, 3] -> displayed frames."""
        if self.upright:
            return frames
        if self.transpose:
            frames = frames.transpose(0, 2, 1, 3)
        if self.flip_h:
            frames = frames[:, :, ::-1]
        if self.flip_v:
            frames = frames[:, ::-1]
        return np.ascontiguousarray(frames)


_UPRIGHT = _Orientation()


class DecodedVideo:
    """An opened video: probed :attr:`info`, frames decoded on demand. One thread, one request; then close."""

    def __init__(self, reader: decord.VideoReader, info: VideoInfo, orientation: _Orientation, limits: DecodeLimits):
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
        mp4 = _probe_mp4(fh) if kind == "video:mp4" else None
    orientation = mp4.orientation if mp4 is not None else _UPRIGHT

    decord_input: Any = _WholeBuffer(data) if data is not None else path
    if mp4 is not None and mp4.matrix_offsets:  # decord must not turn frames itself (see the module docstring)
        buffer = bytearray(data if data is not None else Path(path).read_bytes())  # type: ignore[arg-type]
        for offset in mp4.matrix_offsets:
            buffer[offset : offset + 36] = _IDENTITY_MATRIX
        decord_input = _WholeBuffer(buffer)
    try:
        threads = decoder_threads() if num_threads is None else num_threads
        reader = decord.VideoReader(decord_input, num_threads=threads)
    except AssertionError as exc:  # decord asserts a positive frame count
        raise EmptyVideoError("The video has no frames.") from exc
    except MemoryError:
        raise
    except Exception as exc:
        raise _open_failure(exc, kind, mp4) from exc
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


def _open_failure(exc: Exception, kind: str, mp4: _Mp4Probe | None) -> Exception:
    """Turn a decord open failure into a typed error, using what the bytes look like."""
    no_stream = "cannot find video stream" in str(exc)
    if mp4 is not None and mp4.empty:
        return EmptyVideoError("The video has no frames.")
    if no_stream or (mp4 is not None and not mp4.has_video):
        return NotAVideoError("The upload has no video stream (for example, an audio-only file).")
    if kind.startswith("video:"):
        return CorruptVideoError("The video is truncated or damaged and cannot be decoded.")
    if kind == "audio":
        return NotAVideoError("The upload is an audio file, not a video.")
    if kind == "text":
        return NotAVideoError("The upload is text, not a video.")
    return NotAVideoError("The upload is not a video format this server can decode.")


# --------------------------------------------------------------------------------------------------------
# MP4 / MOV (ISO BMFF) boxes: the display matrix, and whether the video track has samples


_IDENTITY_MATRIX = struct.pack(">9i", 1 << 16, 0, 0, 0, 1 << 16, 0, 0, 0, 1 << 30)


@dataclass(frozen=True)
class _Mp4Probe:
    has_video: bool
    empty: bool  # no tracks at all, or the first video track lists zero samples and no fragments follow
    orientation: _Orientation = _UPRIGHT
    matrix_offsets: tuple[int, ...] = ()  # file offsets of the matrices to reset when orientation is applied here


def _probe_mp4(fh: BinaryIO) -> _Mp4Probe | None:
    """Read ``moov`` and its first video track; None when there is no complete ``moov`` (e.g. truncated) or the
    boxes contradict themselves (a crafted file must fail as a bad video, never as a server error)."""
    try:
        return _probe_mp4_boxes(fh)
    except (IndexError, struct.error, ValueError):
        return None


def _probe_mp4_boxes(fh: BinaryIO) -> _Mp4Probe | None:
    found = _read_moov(fh)
    if found is None:
        return None
    moov, base, top_level = found
    children = list(_boxes(moov, 0, len(moov)))
    fragmented = any(kind == b"mvex" for kind, _, _ in children)
    mvhd = next(((s, e) for kind, s, e in children if kind == b"mvhd"), None)
    traks = [(s, e) for kind, s, e in children if kind == b"trak"]
    for start, end in traks:
        mdia = _child(moov, start, end, b"mdia")
        hdlr = _child(moov, *mdia, b"hdlr") if mdia else None
        if hdlr is None or moov[hdlr[0] + 8 : hdlr[0] + 12] != b"vide":
            continue
        stbl = _child_path(moov, mdia, (b"minf", b"stbl"))  # type: ignore[arg-type]
        samples = _sample_count(moov, stbl) if stbl else None
        empty = samples == 0 and (not fragmented or b"moof" not in top_level)
        tkhd = _child(moov, start, end, b"tkhd")
        track_at = _matrix_offset(moov, tkhd, 40, 52) if tkhd else None
        movie_at = _matrix_offset(moov, mvhd, 36, 48) if mvhd else None
        orientation = _orientation(moov, track_at, movie_at)
        if orientation.upright:
            return _Mp4Probe(True, empty)
        offsets = tuple(base + at for at in (track_at, movie_at) if at is not None)
        return _Mp4Probe(True, empty, orientation, offsets)
    return _Mp4Probe(False, not traks)


def _read_moov(fh: BinaryIO) -> tuple[bytes, int, set[bytes]] | None:
    """(``moov`` body, its file offset, top-level box types), walking top-level headers with seeks."""
    fh.seek(0)
    found: tuple[bytes, int] | None = None
    seen: set[bytes] = set()
    position = 0
    while True:
        header = fh.read(8)
        if len(header) < 8:
            break
        size, kind = struct.unpack(">I4s", header)
        header_len = 8
        if size == 1:
            large = fh.read(8)
            if len(large) < 8:
                break
            size, header_len = struct.unpack(">Q", large)[0], 16
        seen.add(kind)
        if kind == b"moov" and found is None:
            body_len = size - header_len if size else _MAX_MOOV_BYTES
            if body_len < 0 or body_len > _MAX_MOOV_BYTES:
                return None
            body = fh.read(body_len)
            if size and len(body) < body_len:
                return None  # cut off: a truncated file
            found = (body, position + header_len)
        elif size >= header_len:
            fh.seek(size - header_len, os.SEEK_CUR)
        if size < header_len:  # size 0 ("to the end of the file") or malformed: nothing follows
            break
        position += size
    return None if found is None else (found[0], found[1], seen)


def _boxes(buf: bytes, start: int, end: int) -> Iterator[tuple[bytes, int, int]]:
    """(type, body start, body end) of the boxes in ``buf[start:end]``; stops at the first malformed header."""
    pos = start
    while pos + 8 <= end:
        size, kind = struct.unpack_from(">I4s", buf, pos)
        header_len = 8
        if size == 1:
            if pos + 16 > end:
                return
            size, header_len = struct.unpack_from(">Q", buf, pos + 8)[0], 16
        elif size == 0:
            size = end - pos
        if size < header_len or pos + size > end:
            return
        yield kind, pos + header_len, pos + size
        pos += size


def _child(buf: bytes, start: int, end: int, want: bytes) -> tuple[int, int] | None:
    return next(((s, e) for kind, s, e in _boxes(buf, start, end) if kind == want), None)


def _child_path(buf: bytes, span: tuple[int, int], path: Sequence[bytes]) -> tuple[int, int] | None:
    found: tuple[int, int] | None = span
    for want in path:
        if found is None:
            return None
        found = _child(buf, *found, want)
    return found


def _sample_count(buf: bytes, stbl: tuple[int, int]) -> int | None:
    box = _child(buf, *stbl, b"stsz") or _child(buf, *stbl, b"stz2")
    if box is None or box[1] - box[0] < 12:
        return None
    return struct.unpack_from(">I", buf, box[0] + 8)[0]  # full-box header, size/field-size word, then the count


def _matrix_offset(buf: bytes, box: tuple[int, int], v0: int, v1: int) -> int | None:
    """Offset of the 3x3 matrix in a ``tkhd``/``mvhd`` body (its place depends on the box version)."""
    if box[1] - box[0] < 1:
        return None
    at = box[0] + (v1 if buf[box[0]] == 1 else v0)
    return at if at + 36 <= box[1] else None


def _orientation(buf: bytes, track_at: int | None, movie_at: int | None) -> _Orientation:
    """Orientation of track matrix x movie matrix, as ffmpeg composes them.

    A matrix [a b u; c d v; x y w] shows the coded point (p, q) at (a p + c q, b p + d q). Only the 8
    axis-aligned turn/mirror matrices are recognised; anything else is left as coded, as ffmpeg's auto-rotation
    does.
    """
    m = np.eye(2)
    for at in (track_at, movie_at):
        if at is not None:
            a, b, _, c, d, _, _, _, _ = struct.unpack_from(">9i", buf, at)
            m = m @ np.array([[a, b], [c, d]], dtype=np.float64)
    scale = np.abs(m).max()
    if scale == 0:
        return _UPRIGHT
    (a, b), (c, d) = np.round(m / scale, 3)
    rotation = round(math.degrees(math.atan2(b, a)) / 90) * 90 % 360
    mirrored = bool(a * d - b * c < 0)
    if b == c == 0 and abs(a) == abs(d) == 1:
        return _Orientation(False, bool(a < 0), bool(d < 0), rotation, mirrored)
    if a == d == 0 and abs(b) == abs(c) == 1:
        return _Orientation(True, bool(c < 0), bool(b < 0), rotation, mirrored)
    return _UPRIGHT

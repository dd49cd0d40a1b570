"""MP4 / MOV (ISO BMFF) boxes: the display matrix, whether the video track has samples, and its codec.

decord (ffmpeg) reads these files itself; this module reads just enough of the box tree, without decoding, for
what decord does not tell us: orientation it gets wrong (see :mod:`sampling.decode`), "no frames" versus
"damaged", and the codec's name when ffmpeg has no decoder for it. Any malformed or contradictory box tree
yields ``None`` (a crafted file must fail as a bad video, never as a server error).
"""

from __future__ import annotations

import math
import os
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np

MAX_MOOV_BYTES = 64 << 20  # sample tables of a multi-hour video stay far below this
MATROSKA_SCAN_BYTES = 64 << 10  # Matroska/WebM track headers sit near the start of the file

# sample-entry codes (MP4) and codec ids (Matroska) -> the codec's common name, for error messages
CODEC_NAMES = {
    "av01": "AV1",
    "V_AV1": "AV1",
    "hvc1": "HEVC (H.265)",
    "hev1": "HEVC (H.265)",
    "V_MPEGH/ISO/HEVC": "HEVC (H.265)",
    "vp09": "VP9",
    "V_VP9": "VP9",
    "vp08": "VP8",
    "V_VP8": "VP8",
    "avc1": "H.264",
    "avc3": "H.264",
    "V_MPEG4/ISO/AVC": "H.264",
    "vvc1": "VVC (H.266)",
    "vvi1": "VVC (H.266)",
    "apch": "ProRes",
    "apcn": "ProRes",
    "mp4v": "MPEG-4 Part 2",
}


def codec_name(code: str) -> str:
    """A readable name for a sample-entry code or Matroska codec id (the code itself when unknown)."""
    return CODEC_NAMES.get(code, code)


def matroska_video_codec(fh: BinaryIO) -> str | None:
    """The first ``V_...`` CodecID in a Matroska/WebM file's head (element 0x86, one-byte size), or None."""
    fh.seek(0)
    head = fh.read(MATROSKA_SCAN_BYTES)
    at = head.find(b"\x86")
    while at != -1 and at + 2 < len(head):
        size = head[at + 1] & 0x7F if head[at + 1] & 0x80 else 0
        value = head[at + 2 : at + 2 + size]
        if size and value.startswith(b"V_") and value.isascii():
            return value.decode("ascii")
        at = head.find(b"\x86", at + 1)
    return None


@dataclass(frozen=True)
class Orientation:
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


UPRIGHT = Orientation()


IDENTITY_MATRIX = struct.pack(">9i", 1 << 16, 0, 0, 0, 1 << 16, 0, 0, 0, 1 << 30)


@dataclass(frozen=True)
class Mp4Probe:
    has_video: bool
    empty: bool  # no tracks at all, or the first video track lists zero samples and no fragments follow
    orientation: Orientation = UPRIGHT
    matrix_offsets: tuple[int, ...] = ()  # file offsets of the matrices to reset when orientation is applied here
    codec: str | None = None  # the video track's sample-entry code (``avc1``, ``hvc1``, ``av01``...), if read


def probe_mp4(fh: BinaryIO) -> Mp4Probe | None:
    """Read ``moov`` and its first video track; None when there is no complete ``moov`` (e.g. truncated) or the
    boxes contradict themselves (a crafted file must fail as a bad video, never as a server error)."""
    try:
        return _probe_mp4_boxes(fh)
    except (IndexError, struct.error, ValueError):
        return None


def _probe_mp4_boxes(fh: BinaryIO) -> Mp4Probe | None:
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
        codec = _sample_entry(moov, stbl) if stbl else None
        if orientation.upright:
            return Mp4Probe(True, empty, codec=codec)
        offsets = tuple(base + at for at in (track_at, movie_at) if at is not None)
        return Mp4Probe(True, empty, orientation, offsets, codec)
    return Mp4Probe(False, not traks)


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
            body_len = size - header_len if size else MAX_MOOV_BYTES
            if body_len < 0 or body_len > MAX_MOOV_BYTES:
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


def _sample_entry(buf: bytes, stbl: tuple[int, int]) -> str | None:
    """The four-character code of the first sample entry in ``stsd`` (the track's codec), or None."""
    box = _child(buf, *stbl, b"stsd")
    if box is None or box[1] - box[0] < 16:
        return None  # full-box header and entry count, then the entry's size and type
    code = buf[box[0] + 12 : box[0] + 16]
    return code.decode("ascii") if code.isascii() and code.decode("ascii").isprintable() else None


def _matrix_offset(buf: bytes, box: tuple[int, int], v0: int, v1: int) -> int | None:
    """Offset of the 3x3 matrix in a ``tkhd``/``mvhd`` body (its place depends on the box version)."""
    if box[1] - box[0] < 1:
        return None
    at = box[0] + (v1 if buf[box[0]] == 1 else v0)
    return at if at + 36 <= box[1] else None


def _orientation(buf: bytes, track_at: int | None, movie_at: int | None) -> Orientation:
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
        return UPRIGHT
    (a, b), (c, d) = np.round(m / scale, 3)
    rotation = round(math.degrees(math.atan2(b, a)) / 90) * 90 % 360
    mirrored = bool(a * d - b * c < 0)
    if b == c == 0 and abs(a) == abs(d) == 1:
        return Orientation(False, bool(a < 0), bool(d < 0), rotation, mirrored)
    if a == d == 0 and abs(b) == abs(c) == 1:
        return Orientation(True, bool(c < 0), bool(b < 0), rotation, mirrored)
    return UPRIGHT

"""Property tests of the video-metadata parsing: whatever the bytes, decoding fails only with a typed
``VideoError`` (which the server turns into a 4xx), never with an arbitrary exception (a 500)."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from media import encode_mp4

from sampling.decode import open_video
from sampling.errors import VideoError


def _box(kind: bytes, payload: bytes = b"") -> bytes:
    return struct.pack(">I", 8 + len(payload)) + kind + payload


@pytest.fixture(scope="module")
def mp4(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    frames = np.random.default_rng(0).integers(0, 255, (6, 64, 96, 3), dtype=np.uint8)
    return encode_mp4(frames, tmp_path_factory.mktemp("fuzz") / "f.mp4").read_bytes()


def _decode_or_typed_error(data: bytes) -> None:
    try:
        with open_video(data) as video:
            video.frames([0])
    except VideoError:
        pass


def test_crafted_moov_with_an_empty_track_header_is_a_typed_error() -> None:
    hdlr = _box(b"hdlr", b"\0" * 8 + b"vide" + b"\0" * 12)
    moov = _box(b"moov", _box(b"trak", _box(b"mdia", hdlr) + _box(b"tkhd")) + _box(b"mvhd"))
    with pytest.raises(VideoError):
        open_video(_box(b"ftyp", b"isom\0\0\0\0isom") + moov + _box(b"mdat", b"\0" * 16))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_mutated_mp4s_fail_only_with_typed_errors(mp4: bytes, data: st.DataObject) -> None:
    mutated = bytearray(mp4)
    for _ in range(data.draw(st.integers(1, 12))):
        at = data.draw(st.integers(0, len(mutated) - 1))
        mutated[at] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(8, len(mutated)))
    _decode_or_typed_error(bytes(mutated[:cut]))


@settings(max_examples=150, deadline=None)
@given(
    payload=st.binary(max_size=512),
    kinds=st.lists(
        st.sampled_from([b"moov", b"trak", b"mdia", b"tkhd", b"mvhd", b"hdlr", b"stsz", b"ftyp"]), max_size=6
    ),
)
def test_random_box_trees_fail_only_with_typed_errors(payload: bytes, kinds: list[bytes]) -> None:
    body = payload
    for kind in kinds:
        body = _box(kind, body)
    _decode_or_typed_error(_box(b"ftyp", b"isom\0\0\0\0isom") + body)


def test_fixture_video_decodes(mp4: bytes, tmp_path: Path) -> None:
    with open_video(mp4) as video:
        assert video.frames([0, 5]).shape == (2, 64, 96, 3)

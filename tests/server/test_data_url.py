"""Property tests of the data-URL parser: any string gives bytes or a 400/413/415 ``APIError``, nothing else."""

from __future__ import annotations

import base64

from hypothesis import given, settings
from hypothesis import strategies as st

from server.errors import APIError
from server.media.resolve import _is_video_mime, parse_data_url


@settings(max_examples=400, deadline=None)
@given(url=st.text(max_size=200))
def test_any_text_is_bytes_or_a_client_error(url: str) -> None:
    try:
        parse_data_url("data:" + url, 64, "video_url", _is_video_mime)
    except APIError as err:
        assert err.status in (400, 413, 415)


@settings(max_examples=200, deadline=None)
@given(
    payload=st.binary(max_size=48), mime=st.sampled_from(["video/mp4", "video/webm", "application/octet-stream", ""])
)
def test_valid_base64_round_trips(payload: bytes, mime: str) -> None:
    url = f"data:{mime};base64,{base64.b64encode(payload).decode()}"
    assert parse_data_url(url, 64, "video_url", _is_video_mime) == payload


@settings(max_examples=100, deadline=None)
@given(mime=st.sampled_from(["image/png", "text/plain", "audio/mp4", "application/json"]))
def test_non_video_types_are_415(mime: str) -> None:
    try:
        parse_data_url(f"data:{mime};base64,AAAA", 64, "video_url", _is_video_mime)
    except APIError as err:
        assert err.status == 415
    else:
        raise AssertionError("accepted a non-video MIME type")

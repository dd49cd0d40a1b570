"""Bad input through the real server: each case gets its documented status in OpenAI's error shape, the server
keeps answering afterwards, and no temporary or partial file stays behind."""

from __future__ import annotations

import base64
import io
import json
import os
import re
import socket
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import numpy as np
import pytest
from media import audio_only_mp4, empty_fragmented_mp4, encode_mp4
from PIL import Image

pytestmark = pytest.mark.engine
MODEL = "spatial-mllm-tiny"


def _chat(video_url: str, **extra) -> dict:
    return {
        "model": MODEL,
        "max_tokens": 2,
        "messages": [
            {
                "role": "user",
                "content": [{"type": "video_url", "video_url": {"url": video_url}}, {"type": "text", "text": "hi"}],
            }
        ],
        **extra,
    }


def _b64(data: bytes, mime: str = "video/mp4") -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def _png_bytes() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (32, 32), (200, 10, 10)).save(out, format="PNG")
    return out.getvalue()


def _long_video(path: Path) -> bytes:
    frames = np.zeros((130, 16, 16, 3), dtype=np.uint8)
    return encode_mp4(frames, path, fps=1).read_bytes()


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory, room_video: Path) -> dict[str, bytes]:
    root = tmp_path_factory.mktemp("bad-media")
    good = room_video.read_bytes()
    return {
        "good": good,
        "truncated": good[: len(good) // 3],
        "corrupt": good[:48] + bytes(np.random.default_rng(0).integers(0, 256, 20_000, dtype=np.uint8)),
        "text": b"this is a text file, not a video\n" * 50,
        "png": _png_bytes(),
        "zero_frames": empty_fragmented_mp4(root / "empty.mp4"),
        "long": _long_video(root / "long.mp4"),
        "oversized": good + b"\0" * (2 << 20),
        "audio_only": audio_only_mp4(root / "audio.m4a"),
        "short": encode_mp4(np.zeros((3, 32, 32, 3), dtype=np.uint8), root / "short.mp4").read_bytes(),
        "av1": encode_mp4(np.zeros((4, 64, 64, 3), dtype=np.uint8), root / "av1.mp4", codec="libsvtav1").read_bytes(),
    }


def _upload(live, path: str, field: str, data: bytes, form: dict | None = None) -> httpx.Response:
    return httpx.post(
        f"{live.base}{path}",
        files={field: ("room.mp4", data, "video/mp4")},
        data=form,
        headers=live.headers,
        timeout=30,
    )


def _upload_good(form: dict) -> Callable:
    """A case: the good video uploaded to the Files API with ``form``."""
    return lambda live, m: _upload(live, "/v1/files", "file", m["good"], form)


def _ask_good(form: dict) -> Callable:
    """A case: the good video sent to the one-shot route with ``form``."""
    return lambda live, m: _upload(live, "/v1/video/chat", "video", m["good"], form)


def _get(path: str, **params) -> Callable:
    return lambda live, m: httpx.get(f"{live.base}{path}", params=params, headers=live.headers, timeout=30)


def _raw(live, body: bytes, headers: dict | None = None) -> httpx.Response:
    return httpx.post(
        f"{live.base}/v1/chat/completions",
        content=body,
        headers={**live.headers, "Content-Type": "application/json", **(headers or {})},
        timeout=60,
    )


class _RawResponse:
    """Just enough of a response for the checks below, read off a raw socket."""

    def __init__(self, raw: bytes) -> None:
        head, _, body = raw.partition(b"\r\n\r\n")
        self.status_code = int(head.split(b" ", 2)[1])
        self.text = body.decode(errors="replace")

    def json(self) -> dict:
        return json.loads(self.text)


def _declared_only(live, declared: int) -> _RawResponse:
    """Headers announcing a huge body, and no body: the cap must answer from the header alone."""
    url = urlsplit(live.base)
    head = (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: {url.netloc}\r\nAuthorization: Bearer {live.key}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {declared}\r\nConnection: close\r\n\r\n"
    )
    with socket.create_connection((url.hostname, url.port), timeout=30) as sock:
        sock.sendall(head.encode())
        raw = b""
        while chunk := sock.recv(65536):
            raw += chunk
    return _RawResponse(raw)


def _parts(n: int) -> dict:
    return {"model": MODEL, "messages": [{"role": "user", "content": [{"type": "text", "text": "a"}] * n}]}


def _post(live, body: dict | None = None, headers: dict | None = None, **kwargs) -> httpx.Response:
    return httpx.post(
        f"{live.base}/v1/chat/completions",
        json=body,
        headers=live.headers if headers is None else headers,
        timeout=120,
        **kwargs,
    )


CASES: list[tuple[str, int, Callable]] = [
    ("corrupt video", 400, lambda live, m: _post(live, _chat(_b64(m["corrupt"])))),
    ("truncated video", 400, lambda live, m: _post(live, _chat(_b64(m["truncated"])))),
    ("text file as video", 415, lambda live, m: _post(live, _chat(_b64(m["text"], "application/octet-stream")))),
    ("png renamed as video", 415, lambda live, m: _post(live, _chat(_b64(m["png"])))),
    ("zero-frame video", 400, lambda live, m: _post(live, _chat(_b64(m["zero_frames"])))),
    ("video over the duration cap", 400, lambda live, m: _post(live, _chat(_b64(m["long"])))),
    ("oversized inline video", 413, lambda live, m: _post(live, _chat(_b64(m["oversized"])))),
    ("wrong MIME type in data URL", 415, lambda live, m: _post(live, _chat(_b64(m["good"], "text/plain")))),
    ("bad base64", 400, lambda live, m: _post(live, _chat("data:video/mp4;base64,@@not-base64@@"))),
    ("data URL without base64", 400, lambda live, m: _post(live, _chat("data:video/mp4,rawbytes"))),
    ("unknown file id", 404, lambda live, m: _post(live, _chat("file-" + "0" * 32))),
    ("malformed file id", 404, lambda live, m: _post(live, _chat("file-../../etc/passwd"))),
    ("loopback URL", 400, lambda live, m: _post(live, _chat("http://127.0.0.1:1/room.mp4"))),
    ("private URL", 400, lambda live, m: _post(live, _chat("http://10.0.0.1/room.mp4"))),
    ("link-local URL", 400, lambda live, m: _post(live, _chat("http://169.254.169.254/latest/meta-data"))),
    ("IPv6 loopback URL", 400, lambda live, m: _post(live, _chat("http://[::1]/room.mp4"))),
    ("file:// URL", 400, lambda live, m: _post(live, _chat("file:///etc/passwd"))),
    ("internal prepared-frame scheme", 400, lambda live, m: _post(live, _chat("spatial-mllm-prepared://guess"))),
    (
        "frames above the cap",
        400,
        lambda live, m: _post(live, _chat(_b64(m["good"]), video_sampling={"num_frames": 17})),
    ),
    (
        "negative frame count",
        422,
        lambda live, m: _post(live, _chat(_b64(m["good"]), video_sampling={"num_frames": -3})),
    ),
    (
        "unknown strategy",
        422,
        lambda live, m: _post(live, _chat(_b64(m["good"]), video_sampling={"strategy": "random"})),
    ),
    (
        "fps and num_frames together",
        400,
        lambda live, m: _post(live, _chat(_b64(m["good"]), video_sampling={"num_frames": 4, "fps": 1.0})),
    ),
    (
        "too many videos",
        400,
        lambda live, m: _post(
            live,
            {
                "model": MODEL,
                "messages": [
                    {
                        "role": "user",
                        "content": [{"type": "video_url", "video_url": {"url": _b64(m["good"])}}] * 3,
                    }
                ],
            },
        ),
    ),
    (
        "bad JSON",
        400,
        lambda live, m: httpx.post(
            f"{live.base}/v1/chat/completions",
            content=b'{"model": "x", "messages": [',
            headers={**live.headers, "Content-Type": "application/json"},
            timeout=30,
        ),
    ),
    ("missing messages", 422, lambda live, m: _post(live, {"model": MODEL})),
    ("missing API key", 401, lambda live, m: _post(live, _chat(_b64(m["good"])), headers={})),
    (
        "wrong API key",
        401,
        lambda live, m: _post(live, _chat(_b64(m["good"])), headers={"Authorization": "Bearer nope"}),
    ),
    (
        "upload of a text file",
        415,
        lambda live, m: _upload(live, "/v1/files", "file", m["text"], {"purpose": "user_data"}),
    ),
    ("upload for a purpose a video cannot serve", 400, _upload_good({"purpose": "fine-tune"})),
    ("upload with an unknown form field", 400, _upload_good({"purpose": "user_data", "purpse": "x"})),
    ("upload with the purpose sent twice", 400, _upload_good({"purpose": ["user_data", "vision"]})),
    ("content of an unknown file", 404, _get(f"/v1/files/file-{'ab' * 16}/content")),
    ("file list page size over 10000", 422, _get("/v1/files", limit=10001)),
    ("one-shot with a misspelt sampling field", 400, _ask_good({"question": "hi", "num_frame": "4"})),
    ("one-shot with the question sent twice", 400, _ask_good({"question": ["a", "b"]})),
    ("upload over the byte cap", 413, lambda live, m: _upload(live, "/v1/files", "file", m["oversized"])),
    ("empty upload", 400, lambda live, m: _upload(live, "/v1/files", "file", b"")),
    (
        "get unknown file",
        404,
        lambda live, m: httpx.get(f"{live.base}/v1/files/file-{'ab' * 16}", headers=live.headers, timeout=30),
    ),
    ("one-shot without question", 422, lambda live, m: _upload(live, "/v1/video/chat", "video", m["good"])),
    (
        "one-shot with a PNG",
        415,
        lambda live, m: _upload(live, "/v1/video/chat", "video", m["png"], {"question": "hi"}),
    ),
    (
        "one-shot with frames above the cap",
        400,
        lambda live, m: _upload(live, "/v1/video/chat", "video", m["good"], {"question": "hi", "num_frames": "64"}),
    ),
    ("audio-only mp4", 415, lambda live, m: _post(live, _chat(_b64(m["audio_only"])))),
    ("PNG data URL on a video part", 415, lambda live, m: _post(live, _chat(_b64(m["png"], "image/png")))),
    ("10k-part message", 400, lambda live, m: _post(live, _parts(10_000))),
    (
        "enormous text",
        413,
        lambda live, m: _post(live, {"model": MODEL, "messages": [{"role": "user", "content": "x" * (5 << 20)}]}),
    ),
    (
        "invalid UTF-8 body",
        400,
        lambda live, m: _raw(live, b'{"model": "m", "messages": [{"role": "user", "content": "\xff\xfe"}]}'),
    ),
    (
        "deeply nested JSON",
        400,
        lambda live, m: _raw(live, b'{"model": "m", "messages": ' + b"[" * 50_000 + b"]" * 50_000 + b"}"),
    ),
    ("declared body far over the cap", 413, lambda live, m: _declared_only(live, 1 << 40)),
    ("zero frames asked", 422, lambda live, m: _post(live, _chat(_b64(m["good"]), video_sampling={"num_frames": 0}))),
    ("negative fps", 422, lambda live, m: _post(live, _chat(_b64(m["good"]), video_sampling={"fps": -1}))),
    (
        "pixels above the cap",
        400,
        lambda live, m: _post(live, _chat(_b64(m["good"]), video_sampling={"max_pixels": 10**9})),
    ),
    (
        "fixed frame size above the pixel cap",
        400,
        lambda live, m: _post(
            live, _chat(_b64(m["good"]), video_sampling={"resized_height": 480, "resized_width": 640})
        ),
    ),
    ("negative max_tokens", 400, lambda live, m: _post(live, _chat(_b64(m["good"]), max_tokens=-5))),
    (
        "traversal in file path",
        404,
        lambda live, m: httpx.get(f"{live.base}/v1/files/..%2F..%2Fetc%2Fpasswd", headers=live.headers, timeout=30),
    ),
    (
        "image from a private URL",
        400,
        lambda live, m: _post(
            live,
            {
                "model": MODEL,
                "messages": [
                    {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "http://10.0.0.7/x.png"}}]}
                ],
            },
        ),
    ),
    (
        "video part without URL",
        400,
        lambda live, m: _post(
            live,
            {
                "model": MODEL,
                "messages": [{"role": "user", "content": [{"type": "video_url", "video_url": {"url": ""}}]}],
            },
        ),
    ),
]


@pytest.mark.parametrize(("name", "status", "send"), CASES, ids=[case[0] for case in CASES])
def test_bad_input_gets_documented_error(live, media, name: str, status: int, send: Callable) -> None:
    response = send(live, media)
    assert response.status_code == status, f"{name}: {response.status_code} {response.text[:500]}"
    error = response.json()["error"]
    assert isinstance(error["message"], str) and error["message"]
    assert isinstance(error["type"], str) and error["type"]
    assert error["code"] == status
    assert "param" in error
    assert "/tmp" not in error["message"] and "Traceback" not in error["message"]


def _regular_files(root: Path) -> set[Path]:
    """Plain files under ``root`` (vLLM keeps its ZMQ IPC sockets in TMPDIR too; those are not ours)."""
    return {path for path in root.rglob("*") if path.is_file()}


def _open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def _engine_requests(live) -> float:
    text = httpx.get(f"{live.base}/metrics", timeout=30).text
    values = re.findall(r"^vllm:num_requests_(?:running|waiting)\{[^}]*\} ([0-9.e+-]+)$", text, re.M)
    assert values, "vLLM's request gauges are missing from /metrics"
    return sum(float(v) for v in values)


def test_server_keeps_serving_and_leaves_nothing_behind(server, media) -> None:
    live, _, server_tmp = server
    _post(live, _chat(data_url_bytes(media["good"]), temperature=0))  # warm: pools and caches exist before counting
    files_before, fds_before = _regular_files(server_tmp), _open_fds(live.process.pid)
    uploads_before = set(live.uploads.glob("file-*"))  # other tests share this server and may have uploaded
    for _, _, send in CASES:
        send(live, media)
    reply = _post(live, _chat(data_url_bytes(media["good"]), temperature=0))
    assert reply.status_code == 200, reply.text
    assert _regular_files(server_tmp) == files_before
    deadline = time.monotonic() + 10  # the server closes a connection shortly after the client does
    while _open_fds(live.process.pid) > fds_before and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _open_fds(live.process.pid) <= fds_before
    assert _engine_requests(live) == 0
    assert not list(live.uploads.glob(".*.partial"))
    assert set(live.uploads.glob("file-*")) == uploads_before  # every upload in the cases was refused


def data_url_bytes(data: bytes) -> str:
    return _b64(data)


def test_health_was_503_while_loading(server) -> None:
    _, statuses, _ = server
    assert statuses[-1] == 200
    assert 503 in statuses, statuses


def test_a_failed_request_does_not_poison_the_next_one_on_the_same_video(live, media) -> None:
    # A request that vLLM refuses after our preprocessing (here: negative max_tokens) must leave no stale cache
    # entry behind that breaks the next request with the same frames (vLLM 0.32's processor-cache mirror did).
    sampling = {"num_frames": 6}
    refused = _post(live, _chat(_b64(media["good"]), max_tokens=-1, video_sampling=sampling))
    assert refused.status_code == 400
    accepted = _post(live, _chat(_b64(media["good"]), max_tokens=2, video_sampling=sampling))
    assert accepted.status_code == 200, accepted.text


def _jpeg_list(frames: int) -> str:
    """vLLM's ``data:video/jpeg;base64,`` layout: base64 JPEG frames separated by commas."""
    out = io.BytesIO()
    Image.new("RGB", (16, 16), (90, 120, 200)).save(out, format="JPEG", optimize=True)
    return "data:video/jpeg;base64," + ",".join([base64.b64encode(out.getvalue()).decode()] * frames)


def _vllm_num_frames(count: int) -> Callable:
    return lambda live, m: _post(live, _chat(_b64(m["good"]), media_io_kwargs={"video": {"num_frames": count}}))


def _post_path(live, path: str, body: dict) -> httpx.Response:
    return httpx.post(f"{live.base}{path}", json=body, headers=live.headers, timeout=60)


VIDEO_PART = "messages[0].content[0].video_url"
FIELD_CASES: list[tuple[str, int, str, str, Callable]] = [
    ("corrupt video", 400, VIDEO_PART, "damaged", lambda live, m: _post(live, _chat(_b64(m["corrupt"])))),
    ("png as video", 415, VIDEO_PART, "PNG", lambda live, m: _post(live, _chat(_b64(m["png"])))),
    ("AV1 video", 415, VIDEO_PART, "AV1", lambda live, m: _post(live, _chat(_b64(m["av1"])))),
    # too few frames: the field to change is the frame count (the message says how many to ask for)
    ("short video", 400, "video_sampling.num_frames", "at most", lambda live, m: _post(live, _chat(_b64(m["short"])))),
    ("oversized data URL", 413, VIDEO_PART, "/v1/files", lambda live, m: _post(live, _chat(_b64(m["oversized"])))),
    ("unknown file id", 404, VIDEO_PART, "No such file", lambda live, m: _post(live, _chat("file-" + "0" * 32))),
    ("MIME type", 415, VIDEO_PART, "text/plain", lambda live, m: _post(live, _chat(_b64(m["good"], "text/plain")))),
    (
        "private URL",
        400,
        VIDEO_PART,
        "--allow-private-urls",
        lambda live, m: _post(live, _chat("http://10.0.0.1/room.mp4")),
    ),
    (
        "one frame",
        422,
        "video_sampling.num_frames",
        "2",
        lambda live, m: _post(live, _chat(_b64(m["good"]), video_sampling={"num_frames": 1})),
    ),
    (
        "max_pixels below the minimum",
        422,
        "video_sampling.max_pixels",
        "100352",
        lambda live, m: _post(live, _chat(_b64(m["good"]), video_sampling={"max_pixels": 50_000})),
    ),
    (
        "one-shot empty question",
        422,
        "question",
        "question",
        lambda live, m: _upload(live, "/v1/video/chat", "video", m["good"], {"question": ""}),
    ),
    (
        "one-shot frames above the cap",
        400,
        "num_frames",
        "at most",
        lambda live, m: _upload(live, "/v1/video/chat", "video", m["good"], {"question": "hi", "num_frames": "64"}),
    ),
    (
        "one-shot PNG",
        415,
        "video",
        "PNG",
        lambda live, m: _upload(live, "/v1/video/chat", "video", m["png"], {"question": "hi"}),
    ),
    # CVE-2026-34755 / GHSA-pq5c-rjhq-qp7p (vLLM < 0.19.0 decoded every frame of the list): refused from the header
    (
        "5000-frame data:video/jpeg list",
        400,
        VIDEO_PART,
        "image_url parts",
        lambda live, m: _post(live, _chat(_jpeg_list(5000))),
    ),
    ("zero frames through vLLM's option", 400, "media_io_kwargs.video.num_frames", "num_frames", _vllm_num_frames(0)),
    (
        "negative frames through vLLM's option",
        400,
        "media_io_kwargs.video.num_frames",
        "num_frames",
        _vllm_num_frames(-1),
    ),
    (
        "misspelt top-level field",
        400,
        "video_samplng",
        "Unrecognized",
        lambda live, m: _post(live, _chat(_b64(m["good"]), video_samplng={})),
    ),
    (
        "unknown sampling field",
        400,
        "video_sampling.frames",
        "Unrecognized",
        lambda live, m: _post(live, _chat(_b64(m["good"]), video_sampling={"frames": 4})),
    ),
    (
        "unknown frames-route field",
        400,
        "thumbnail_hight",
        "Unrecognized",
        lambda live, m: _post_path(live, f"/v1/files/file-{'ab' * 16}/frames", {"thumbnail_hight": 64}),
    ),
    ("unknown upload form field", 400, "purpse", "Unrecognized", _upload_good({"purpose": "user_data", "purpse": "x"})),
    ("unknown one-shot form field", 400, "num_frame", "Unrecognized", _ask_good({"question": "hi", "num_frame": "4"})),
]


@pytest.mark.parametrize(("name", "status", "param", "says", "send"), FIELD_CASES, ids=[c[0] for c in FIELD_CASES])
def test_video_errors_name_the_request_field(live, media, name, status, param, says, send: Callable) -> None:
    response = send(live, media)
    error = response.json()["error"]
    assert (response.status_code, error["param"]) == (status, param), f"{name}: {response.text[:500]}"
    assert says in error["message"] and "nframes" not in error["message"] and "Field required" not in error["message"]

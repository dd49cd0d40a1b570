"""Space-aware sampling through the API, metrics, health, docs, request ids, and disconnects."""

from __future__ import annotations

import re
import socket
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import numpy as np
import pytest
from media import data_url, encode_mp4

pytestmark = pytest.mark.engine
MODEL = "spatial-mllm-tiny"


def _body(url: str, **extra) -> dict:
    return {
        "model": MODEL,
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "video_url", "video_url": {"url": url}},
                    {"type": "text", "text": "Count chairs."},
                ],
            }
        ],
        **extra,
    }


def _metric(text: str, name: str, labels: str = "") -> float:
    pattern = re.compile(rf"^{re.escape(name)}(\{{[^}}]*{re.escape(labels)}[^}}]*\}})? ([0-9.e+-]+)$", re.M)
    values = [float(m.group(2)) for m in pattern.finditer(text)]
    return sum(values)


def test_space_aware_sampling_through_the_api(live, tmp_path: Path) -> None:
    # a video of its own: the shared room video may already sit in the live server's caches (prepared frames, stored
    # selections) from an earlier module, and a cache hit would not sample
    from model_plugin.reference.demo import synthetic_video

    frames = synthetic_video(frames=24, height=112, width=140, seed=41).permute(0, 2, 3, 1).numpy()
    video = encode_mp4(np.ascontiguousarray(frames), tmp_path / "own-room.mp4", fps=8)
    before = httpx.get(f"{live.base}/metrics", timeout=30).text
    body = _body(
        data_url(video), max_tokens=4, temperature=0, video_sampling={"strategy": "space_aware", "num_frames": 4}
    )
    reply = httpx.post(f"{live.base}/v1/chat/completions", json=body, headers=live.headers, timeout=300)
    assert reply.status_code == 200, reply.text
    assert reply.json()["usage"]["completion_tokens"] == 4
    after = httpx.get(f"{live.base}/metrics", timeout=30).text
    label = 'strategy="space_aware"'
    assert (
        _metric(after, "spatial_mllm_sampling_seconds_count", label)
        == _metric(before, "spatial_mllm_sampling_seconds_count", label) + 1
    )


def test_metrics_health_docs_and_request_id(live, room_video: Path) -> None:
    assert httpx.get(f"{live.base}/health", timeout=10).status_code == 200
    docs = httpx.get(f"{live.base}/docs", timeout=10)
    assert docs.status_code == 200
    schema = httpx.get(f"{live.base}/openapi.json", timeout=10).json()
    assert {"/v1/chat/completions", "/v1/files", "/v1/video/chat"} <= set(schema["paths"])
    body = _body(data_url(room_video), max_tokens=2, temperature=0)
    first = httpx.post(f"{live.base}/v1/chat/completions", json=body, headers=live.headers, timeout=120)
    again = httpx.post(
        f"{live.base}/v1/chat/completions", json=body, headers={**live.headers, "X-Request-Id": "trace-42"}, timeout=120
    )
    assert first.headers["x-request-id"] and again.headers["x-request-id"] == "trace-42"
    metrics = httpx.get(f"{live.base}/metrics", timeout=30).text
    assert "vllm:num_requests_running" in metrics
    assert _metric(metrics, "spatial_mllm_sampling_cache_total", 'result="hit"') >= 1
    assert _metric(metrics, "spatial_mllm_decode_seconds_count") >= 1
    assert _metric(metrics, "spatial_mllm_upload_bytes_total") > 0
    assert _metric(metrics, "spatial_mllm_requests_total", 'status="200"') >= 2
    log = live.log_tail(1_000_000)
    assert '"request_id": "trace-42"' in log  # one JSON access line per request, with the request id
    assert live.key not in log


def _engine_busy(live) -> float:
    text = httpx.get(f"{live.base}/metrics", timeout=30).text
    return _metric(text, "vllm:num_requests_running") + _metric(text, "vllm:num_requests_waiting")


def test_disconnect_mid_stream_aborts_the_engine_request(live, room_video: Path) -> None:
    import json

    body = json.dumps(_body(data_url(room_video), max_tokens=2000, temperature=1.0, stream=True, ignore_eos=True))
    url = urlsplit(live.base)
    request = (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: {url.netloc}\r\nAuthorization: Bearer {live.key}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n{body}"
    ).encode()
    with socket.create_connection((url.hostname, url.port), timeout=120) as sock:
        sock.sendall(request)
        received = b""
        while received.count(b"data: ") < 3:
            chunk = sock.recv(65536)
            assert chunk, "server closed the stream early"
            received += chunk
        assert _engine_busy(live) >= 1
    deadline = time.monotonic() + 30
    while _engine_busy(live) > 0:
        assert time.monotonic() < deadline, "the engine still runs the request of a client that left"
        time.sleep(0.2)


def test_cors_is_off_by_default(live) -> None:
    preflight = httpx.options(
        f"{live.base}/v1/chat/completions",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
        timeout=10,
    )
    assert "access-control-allow-origin" not in preflight.headers
    simple = httpx.get(f"{live.base}/v1/models", headers={**live.headers, "Origin": "https://evil.example"}, timeout=10)
    assert simple.status_code == 200 and "access-control-allow-origin" not in simple.headers


def test_only_our_routes_and_vllms_basics_are_exposed(live) -> None:
    paths = set(httpx.get(f"{live.base}/openapi.json", timeout=10).json()["paths"])
    assert paths <= {
        "/health", "/ready", "/metrics", "/version", "/v1/models", "/v1/chat/completions", "/v1/files",
        "/v1/files/{file_id}", "/v1/files/{file_id}/content", "/v1/files/{file_id}/frames", "/v1/video/chat",
    }  # fmt: skip
    for dropped in (
        "/v1/completions",
        "/v1/responses",
        "/v1/messages",
        "/tokenize",
        "/invocations",
        "/v1/chat/completions/batch",
    ):
        assert httpx.post(f"{live.base}{dropped}", json={}, headers=live.headers, timeout=10).status_code in (404, 405)


def test_uploads_are_private_to_the_api_key(live, room_video: Path) -> None:
    """Key two's upload: key one can neither list, read, delete nor ask about it (404, as for an unknown id)."""
    from conftest import API_KEYS

    owner, other = live.headers, {"Authorization": f"Bearer {API_KEYS[0]}"}
    assert owner != other
    upload = httpx.post(
        f"{live.base}/v1/files",
        files={"file": ("room.mp4", room_video.read_bytes(), "video/mp4")},
        headers=owner,
        timeout=60,
    )
    assert upload.status_code == 200, upload.text
    file_id = upload.json()["id"]
    chat = {
        "model": "spatial-mllm-tiny",
        "max_tokens": 2,
        "messages": [
            {
                "role": "user",
                "content": [{"type": "file", "file": {"file_id": file_id}}, {"type": "text", "text": "hi"}],
            }
        ],
    }
    listed = httpx.get(f"{live.base}/v1/files", headers=other, timeout=30)
    assert listed.status_code == 200 and file_id not in [f["id"] for f in listed.json()["data"]]
    for method, path, body in [
        ("GET", f"/v1/files/{file_id}", None),
        ("DELETE", f"/v1/files/{file_id}", None),
        ("POST", "/v1/chat/completions", chat),
    ]:
        refused = httpx.request(method, f"{live.base}{path}", json=body, headers=other, timeout=60)
        assert refused.status_code == 404, (method, path, refused.text)
        assert refused.json()["error"]["message"] == f"No such file: {file_id!r}."
    answered = httpx.post(f"{live.base}/v1/chat/completions", json=chat, headers=owner, timeout=120)
    assert answered.status_code == 200, answered.text
    assert httpx.delete(f"{live.base}/v1/files/{file_id}", headers=owner, timeout=30).json()["deleted"] is True

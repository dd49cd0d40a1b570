"""On the shared live server: every answer about a video says which frames were used (``video_frames``), an
upload can start sampling before the first question, ``fps`` is refused for space-aware sampling, and a server
whose space-aware budget cannot work refuses to start before its engine loads."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import openai
import pytest
from media import data_url, encode_mp4

from sampling.geometry import candidate_indices
from sampling.uniform import UniformSpec, uniform_frame_indices

pytestmark = pytest.mark.engine
MODEL = "spatial-mllm-tiny"
ROOM_FRAMES, ROOM_FPS, LIVE_CANDIDATES = 24, 8.0, 16  # tests/conftest.py: room_video, --space-aware-candidates


def _body(url: str, **extra) -> dict:
    content = [{"type": "video_url", "video_url": {"url": url}}, {"type": "text", "text": "Count chairs."}]
    return {"model": MODEL, "messages": [{"role": "user", "content": content}], "max_tokens": 3, **extra}


def _chat(live, body: dict) -> httpx.Response:
    return httpx.post(f"{live.base}/v1/chat/completions", json=body, headers=live.headers, timeout=300)


def _first_stream_chunk(live, body: dict) -> dict:
    with httpx.stream(
        "POST", f"{live.base}/v1/chat/completions", json={**body, "stream": True}, headers=live.headers, timeout=300
    ) as response:
        assert response.status_code == 200
        events = [line for line in response.iter_lines() if line.startswith("data: {")]
    return json.loads(events[0][len("data: ") :])


def _metric(live, name: str, labels: str) -> float:
    text = httpx.get(f"{live.base}/metrics", timeout=30).text
    pattern = re.compile(rf"^{re.escape(name)}\{{[^}}]*{re.escape(labels)}[^}}]*\}} ([0-9.e+-]+)$", re.M)
    return sum(float(m.group(1)) for m in pattern.finditer(text))


def test_uniform_answers_say_which_frames_streamed_or_not(live, room_video: Path) -> None:
    body = _body(data_url(room_video), video_sampling={"strategy": "uniform", "num_frames": 8})
    reply = _chat(live, body)
    assert reply.status_code == 200, reply.text
    expected = uniform_frame_indices(ROOM_FRAMES, ROOM_FPS, UniformSpec(nframes=8))
    assert reply.json()["video_frames"] == [
        {"strategy": "uniform", "indices": expected, "timestamps_s": [i / ROOM_FPS for i in expected]}
    ]
    first = _first_stream_chunk(live, body)
    assert first["object"] == "chat.completion.chunk" and first["video_frames"] == reply.json()["video_frames"]


def test_space_aware_answers_say_which_frames_and_how_many_candidates(live, room_video: Path) -> None:
    # 3 frames: a sampling key no other test uses, so test_routes still sees its own space-aware pass
    body = _body(data_url(room_video), video_sampling={"strategy": "space_aware", "num_frames": 3})
    reply = _chat(live, body)
    assert reply.status_code == 200, reply.text
    [used] = reply.json()["video_frames"]
    assert used["strategy"] == "space_aware" and used["candidates"] == LIVE_CANDIDATES
    assert 1 <= len(used["indices"]) <= 3 and used["indices"] == sorted(used["indices"])
    assert set(used["indices"]) <= {int(i) for i in candidate_indices(ROOM_FRAMES, LIVE_CANDIDATES)}
    assert used["timestamps_s"] == [i / ROOM_FPS for i in used["indices"]]
    assert _first_stream_chunk(live, body)["video_frames"] == [used]


def test_the_openai_sdk_passes_the_frames_field_through(live, room_video: Path) -> None:
    client = openai.OpenAI(base_url=f"{live.base}/v1", api_key=live.key, max_retries=0, timeout=300)
    body = _body(data_url(room_video))
    reply = client.chat.completions.create(model=MODEL, messages=body["messages"], max_tokens=3)
    assert reply.video_frames[0]["strategy"] == "uniform" and len(reply.video_frames[0]["indices"]) == 8
    stream = client.chat.completions.create(model=MODEL, messages=body["messages"], max_tokens=3, stream=True)
    chunks = list(stream)
    assert chunks[0].video_frames == reply.video_frames
    assert all((chunk.model_extra or {}).get("video_frames") is None for chunk in chunks[1:])


def test_fps_with_space_aware_is_refused_naming_the_field(live, room_video: Path) -> None:
    body = _body(data_url(room_video), video_sampling={"strategy": "space_aware", "fps": 2.0})
    reply = _chat(live, body)
    assert reply.status_code == 400 and reply.json()["error"]["param"] == "video_sampling.fps"
    oneshot = httpx.post(
        f"{live.base}/v1/video/chat",
        files={"video": room_video.read_bytes()},
        data={"question": "Count chairs.", "strategy": "space_aware", "fps": "2"},
        headers=live.headers,
        timeout=60,
    )
    assert oneshot.status_code == 400 and oneshot.json()["error"]["param"] == "fps"


def test_an_upload_can_start_sampling_before_the_first_question(live, tmp_path: Path) -> None:
    frames = np.random.default_rng(42).integers(0, 255, (12, 48, 64, 3), dtype=np.uint8)
    video = encode_mp4(frames, tmp_path / "fresh.mp4", fps=4).read_bytes()
    before = {r: _metric(live, "spatial_mllm_sampling_cache_total", f'result="{r}"') for r in ("miss", "joined", "hit")}
    started = _metric(live, "spatial_mllm_sampling_cache_total", 'result="prepare_on_upload"')
    upload = httpx.post(
        f"{live.base}/v1/files",
        files={"file": ("fresh.mp4", video, "video/mp4")},
        data={"purpose": "user_data", "sampling_strategy": "space_aware", "sampling_num_frames": "4"},
        headers=live.headers,
        timeout=60,
    )
    assert upload.status_code == 200, upload.text
    assert _metric(live, "spatial_mllm_sampling_cache_total", 'result="prepare_on_upload"') == started + 1
    reply = _chat(live, _body(upload.json()["id"], video_sampling={"strategy": "space_aware", "num_frames": 4}))
    assert reply.status_code == 200, reply.text
    assert reply.json()["video_frames"][0]["candidates"] == 12  # every frame of a 12-frame video is a candidate
    after = {r: _metric(live, "spatial_mllm_sampling_cache_total", f'result="{r}"') for r in before}
    assert after["miss"] == before["miss"]  # the question started no sampling of its own...
    assert after["joined"] + after["hit"] == before["joined"] + before["hit"] + 1  # ...it joined or found it


def test_an_upload_asking_for_too_many_frames_is_refused_before_storing(live, room_video: Path) -> None:
    reply = httpx.post(
        f"{live.base}/v1/files",
        files={"file": ("room.mp4", room_video.read_bytes(), "video/mp4")},
        data={"sampling_num_frames": "1000"},
        headers=live.headers,
        timeout=60,
    )
    assert reply.status_code == 400 and reply.json()["error"]["param"] == "sampling_num_frames"


def test_health_counts_the_geometry_worker(live) -> None:
    assert httpx.get(f"{live.base}/health", timeout=10).status_code == 200
    metrics = httpx.get(f"{live.base}/metrics", timeout=30).text
    assert re.search(r'^spatial_mllm_geometry_memory_bytes\{kind="budget"\} [1-9]', metrics, re.M)


def test_start_up_refuses_an_impossible_budget_before_the_engine_loads(tiny_checkpoint: Path) -> None:
    command = [sys.executable, "-m", "server", "--model", str(tiny_checkpoint), "--dtype", "float32"]
    result = subprocess.run(
        [*command, "--space-aware-budget-gib", "0.000001"], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 1
    assert "cannot hold one VGGT pass of 128 candidates" in result.stderr
    assert "--space-aware-budget-gib" in result.stderr.strip().splitlines()[-1]
    assert "Loading" not in result.stdout + result.stderr  # no engine, no weights were loaded

"""The Files API on the live server: the SDK's auto-pagination ends, file objects say what the video is, the
bytes come back, and a clip too short for the default frame count is refused with what to ask for instead."""

from __future__ import annotations

from pathlib import Path

import httpx
import numpy as np
import openai
import pytest
from media import encode_mp4

pytestmark = pytest.mark.engine
MODEL = "spatial-mllm-tiny"


def _client(live, **kwargs) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{live.base}/v1", api_key=live.key, max_retries=0, timeout=120, **kwargs)


@pytest.fixture(scope="module")
def five_frame_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    frames = np.random.default_rng(5).integers(0, 255, (5, 64, 96, 3), dtype=np.uint8)
    return encode_mp4(frames, tmp_path_factory.mktemp("clip") / "five.mp4", fps=5)


def test_sdk_auto_pagination_ends_and_sees_every_file_once(live, room_video: Path) -> None:
    listed_pages: list[httpx.URL] = []

    def count(request: httpx.Request) -> None:
        if request.method == "GET" and request.url.path == "/v1/files":
            listed_pages.append(request.url)

    client = _client(live, http_client=httpx.Client(event_hooks={"request": [count]}))
    mine = []
    for _ in range(5):
        with room_video.open("rb") as handle:
            mine.append(client.files.create(file=handle, purpose="user_data").id)
    try:
        total = len(client.files.list().data)  # other tests on this server may have left files under this key
        listed_pages.clear()
        seen = [f.id for f in client.files.list(limit=2)]  # iterating a page fetches the following pages
        assert len(seen) == len(set(seen)) == total and set(mine) <= set(seen)
        assert len(listed_pages) == -(-total // 2)  # one request per page, then it stops
        oldest_first = [f.id for f in client.files.list(limit=3, order="asc")]
        assert oldest_first == seen[::-1]
    finally:
        for file_id in mine:
            client.files.delete(file_id)


def test_file_object_says_what_the_video_is_and_its_bytes_come_back(live, five_frame_clip: Path) -> None:
    client = _client(live)
    with five_frame_clip.open("rb") as handle:
        uploaded = client.files.create(file=handle, purpose="vision")
    try:
        video = uploaded.model_extra["video"]
        assert video == {
            "num_frames": 5, "fps": 5.0, "duration_s": 1.0, "width": 96, "height": 64, "rotation": 0, "mirrored": False
        }  # fmt: skip
        assert client.files.retrieve(uploaded.id).model_extra["video"] == video
        assert client.files.content(uploaded.id).content == five_frame_clip.read_bytes()
        assert uploaded.id in [f.id for f in client.files.list(purpose="vision")]
        assert uploaded.id not in [f.id for f in client.files.list(purpose="user_data")]
        from conftest import API_KEYS

        theirs = httpx.get(
            f"{live.base}/v1/files/{uploaded.id}/content", headers={"Authorization": f"Bearer {API_KEYS[0]}"}
        )
        assert theirs.status_code == 404

        question = [
            {
                "role": "user",
                "content": [{"type": "file", "file": {"file_id": uploaded.id}}, {"type": "text", "text": "hi"}],
            }
        ]
        with pytest.raises(openai.BadRequestError) as refused:  # the server's default is 8 frames
            client.chat.completions.create(model=MODEL, messages=question, max_tokens=2)
        error = refused.value.body
        assert error["param"] == "video_sampling.num_frames"
        assert "at most 4 frames" in error["message"] and "video_sampling.num_frames" in error["message"]
        answer = client.chat.completions.create(
            model=MODEL, messages=question, max_tokens=2, extra_body={"video_sampling": {"num_frames": 4}}
        )
        assert answer.choices[0].message.content is not None
    finally:
        client.files.delete(uploaded.id)

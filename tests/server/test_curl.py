"""The real ``curl`` binary against the one-shot multipart route, as the README shows it."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.engine


def curl(*args: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("curl")
    if binary is None:
        pytest.fail("curl is not installed")
    return subprocess.run([binary, "-sS", "--max-time", "120", *args], capture_output=True, text=True, check=False)


def test_curl_upload_non_streaming(live, room_video: Path) -> None:
    done = curl(
        "-H", f"Authorization: Bearer {live.key}",
        "-F", f"video=@{room_video}",
        "-F", "question=How many chairs are in this room?",
        "-F", "max_tokens=5", "-F", "temperature=0",
        "-w", "\n%{http_code}",
        f"{live.base}/v1/video/chat",
    )  # fmt: skip
    body, _, status = done.stdout.rpartition("\n")
    assert status == "200", done.stdout + done.stderr
    reply = json.loads(body)
    assert reply["object"] == "chat.completion"
    assert reply["choices"][0]["message"]["content"]
    assert reply["usage"]["completion_tokens"] == 5
    assert reply["model"] == "spatial-mllm-tiny"


def test_curl_upload_streaming(live, room_video: Path) -> None:
    done = curl(
        "-N",
        "-H", f"Authorization: Bearer {live.key}",
        "-F", f"video=@{room_video}",
        "-F", "question=What is left of the bed?",
        "-F", "max_tokens=4", "-F", "stream=true", "-F", "num_frames=4",
        f"{live.base}/v1/video/chat",
    )  # fmt: skip
    events = [line[len("data: ") :] for line in done.stdout.splitlines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]", done.stdout
    chunks = [json.loads(event) for event in events[:-1]]
    assert all(chunk["object"] == "chat.completion.chunk" for chunk in chunks)
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])


def test_curl_without_key_is_401(live, room_video: Path) -> None:
    done = curl("-F", f"video=@{room_video}", "-F", "question=hi", "-w", "\n%{http_code}", f"{live.base}/v1/video/chat")
    body, _, status = done.stdout.rpartition("\n")
    assert status == "401"
    assert json.loads(body)["error"]["code"] == 401

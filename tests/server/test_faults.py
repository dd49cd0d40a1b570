"""Faults: the engine process dies mid-request, and the decoder hangs.

The engine test runs its own server (it is destroyed), with ``VLLM_KEEP_ALIVE_ON_ENGINE_DEATH=1`` so the API
process stays up to be inspected; without it (the default) vLLM's watchdog also stops the API process so an
orchestrator restarts the container.
"""

from __future__ import annotations

import asyncio
import re
import signal
from pathlib import Path

import httpx
import numpy as np
import psutil
import pytest
from conftest import start_server
from media import data_url, encode_mp4

from server.errors import APIError
from server.frames.video_prep import SamplingSpec, VideoPreparer
from server.runtime.settings import ServerSettings


def _engine_core(pid: int) -> psutil.Process:
    for child in psutil.Process(pid).children(recursive=True):
        if "EngineCore" in child.name() or any("EngineCore" in part for part in child.cmdline()):
            return child
    raise AssertionError("no EngineCore process under the server")


async def _engine_running(client: httpx.AsyncClient) -> float:
    text = (await client.get("/metrics")).text
    return sum(float(v) for v in re.findall(r"^vllm:num_requests_running\{[^}]*\} (\S+)$", text, re.M))


@pytest.mark.engine
def test_engine_death_gives_clean_503s_and_unhealthy(tiny_checkpoint: Path, tmp_path: Path, room_video: Path) -> None:
    keep_alive = {"VLLM_KEEP_ALIVE_ON_ENGINE_DEATH": "1"}
    with start_server(tiny_checkpoint, tmp_path, env=keep_alive, clean_stop=False) as (srv, _):
        body = {
            "model": "spatial-mllm-tiny",
            "messages": [
                {"role": "user", "content": [{"type": "video_url", "video_url": {"url": data_url(room_video)}}]}
            ],
            "max_tokens": 3000,
            "ignore_eos": True,
            "temperature": 1.0,
        }

        async def in_flight() -> httpx.Response:
            async with httpx.AsyncClient(base_url=srv.base, headers=srv.headers, timeout=120) as client:
                return await client.post("/v1/chat/completions", json=body)

        async def scenario() -> httpx.Response:
            request = asyncio.create_task(in_flight())
            async with httpx.AsyncClient(base_url=srv.base, timeout=30) as probe:
                while await _engine_running(probe) < 1:  # generation under way (the request has 3000 tokens to go)
                    assert not request.done(), request.result().text
                    await asyncio.sleep(0.1)
            _engine_core(srv.process.pid).send_signal(signal.SIGKILL)
            return await request

        response = asyncio.run(scenario())
        assert response.status_code == 503, response.text
        assert response.json()["error"]["type"] == "ServiceUnavailableError"
        assert int(response.headers["retry-after"]) >= 1
        assert httpx.get(f"{srv.base}/health", timeout=10).status_code == 503
        unready = httpx.get(f"{srv.base}/ready", timeout=10)
        assert unready.status_code == 503 and unready.json()["parts"]["engine"] == "dead"
        again = httpx.post(f"{srv.base}/v1/chat/completions", json=body, headers=srv.headers, timeout=30)
        assert again.status_code == 503 and "retry-after" in again.headers
        assert srv.process.poll() is None  # the API process itself stayed up and answers


def test_a_hanging_decoder_is_bounded_by_the_timeout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    frames = np.zeros((4, 32, 32, 3), np.uint8)
    video = encode_mp4(frames, tmp_path / "v.mp4").read_bytes()
    preparer = VideoPreparer(ServerSettings(decode_timeout_s=0.5))

    async def hang(*args):  # the request's deadline covers waiting for a decoder too (server/frames/decode_pool.py)
        await asyncio.sleep(3)

    monkeypatch.setattr(preparer, "_prepare_uniform", hang)
    spec = SamplingSpec("uniform", 4, None, 16, 3136, 12544, 10**8)
    with pytest.raises(APIError) as caught:
        asyncio.run(preparer.prepare(video, "digest", spec, "video"))
    assert caught.value.status == 503 and caught.value.retry_after and "longer than" in caught.value.message
    assert not preparer._in_flight
    preparer.shutdown()

"""Load on the live server: many concurrent streaming requests with a video, half of the clients leaving
mid-stream. The bounded admission answers the excess at once with 503 + Retry-After, every accepted request
completes (or is aborted when its client left), nothing answers 5xx otherwise, the engine ends idle and the
API process's memory returns to where it was.

CI runs a bounded version (``LOAD_REQUESTS``, default 60); ``SPATIAL_MLLM_LOAD_REQUESTS=200`` is the full run.
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.engine
LOAD_REQUESTS = int(os.environ.get("SPATIAL_MLLM_LOAD_REQUESTS", "60"))


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def _engine_busy(base: str) -> float:
    text = httpx.get(f"{base}/metrics", timeout=30).text
    return sum(float(v) for v in re.findall(r"^vllm:num_requests_(?:running|waiting)\{[^}]*\} (\S+)$", text, re.M))


async def _client(client: httpx.AsyncClient, body: dict, leave_early: bool) -> tuple[int, str | None, bool]:
    """(status, Retry-After, saw [DONE]) of one streamed request; ``leave_early`` hangs up after 2 events."""
    async with client.stream("POST", "/v1/chat/completions", json=body) as response:
        if response.status_code != 200:
            await response.aread()
            return response.status_code, response.headers.get("retry-after"), False
        events = 0
        async for line in response.aiter_lines():
            if line.startswith("data: "):
                events += 1
                if line == "data: [DONE]":
                    return 200, None, True
                if leave_early and events >= 2:
                    return 200, None, False  # leaving the context manager closes the connection
        return 200, None, False


def test_concurrent_streams_with_disconnects(live, room_video: Path) -> None:
    upload = httpx.post(
        f"{live.base}/v1/files",
        files={"file": ("room.mp4", room_video.read_bytes(), "video/mp4")},
        headers=live.headers,
        timeout=60,
    )
    assert upload.status_code == 200, upload.text
    content = [{"type": "file", "file": {"file_id": upload.json()["id"]}}, {"type": "text", "text": "Count chairs."}]
    body = {"model": "spatial-mllm-tiny", "messages": [{"role": "user", "content": content}], "stream": True}
    body |= {"max_tokens": 48, "temperature": 1.0, "ignore_eos": True}
    rss_before = _rss_mib(live.process.pid)

    async def run() -> list[tuple[int, str | None, bool]]:
        limits = httpx.Limits(max_connections=LOAD_REQUESTS)
        async with httpx.AsyncClient(base_url=live.base, headers=live.headers, timeout=300, limits=limits) as client:
            return await asyncio.gather(*(_client(client, body, i % 2 == 1) for i in range(LOAD_REQUESTS)))

    started = time.monotonic()
    results = asyncio.run(run())
    elapsed = time.monotonic() - started
    statuses = [status for status, _, _ in results]
    shed = [(status, retry) for status, retry, _ in results if status == 503]
    accepted = [(done, i % 2 == 1) for i, (status, _, done) in enumerate(results) if status == 200]
    print(f"{LOAD_REQUESTS} requests in {elapsed:.1f} s: {len(accepted)} accepted, {len(shed)} shed with 503")

    assert set(statuses) <= {200, 503}, statuses
    assert shed and all(retry is not None and int(retry) >= 1 for _, retry in shed)
    assert accepted
    assert all(done for done, left in accepted if not left)  # every client that stayed got [DONE]

    deadline = time.monotonic() + 60
    while _engine_busy(live.base) > 0:
        assert time.monotonic() < deadline, "engine still has requests of clients that left"
        time.sleep(0.5)
    assert _rss_mib(live.process.pid) < rss_before * 1.15 + 64
    follow_up = httpx.post(
        f"{live.base}/v1/chat/completions",
        json={**body, "stream": False, "max_tokens": 2},
        headers=live.headers,
        timeout=60,
    )
    assert follow_up.status_code == 200

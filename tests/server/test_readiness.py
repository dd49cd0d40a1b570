"""Readiness apart from liveness, on the session's live server: a geometry worker that is killed and cannot load
again at once (its weights stay hidden until a reload has failed, as a worker that keeps crashing) makes the server
not ready, never not alive; uniform questions keep being answered, and ``/ready`` is 200 again once it is back."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
from media import data_url

from sampling.geometry_pass import PROCESS_TITLE


def _geometry_worker(live) -> psutil.Process:
    workers = [
        child
        for child in psutil.Process(live.process.pid).children(recursive=True)
        if PROCESS_TITLE in " ".join(child.cmdline())
    ]
    assert len(workers) == 1, f"expected one geometry worker, found {workers}"
    return workers[0]


@contextlib.contextmanager
def _weights_hidden(checkpoint: Path) -> Iterator[None]:
    """The checkpoint's safetensors renamed, so the geometry worker fails to load (and retries) until restored."""
    hidden = [path.rename(path.with_name(path.name + ".hidden")) for path in sorted(checkpoint.glob("*.safetensors"))]
    assert hidden, f"no safetensors in {checkpoint}"
    try:
        yield
    finally:
        for path in hidden:
            path.rename(path.with_name(path.name.removesuffix(".hidden")))


def _restarts(live) -> float:
    text = httpx.get(f"{live.base}/metrics", timeout=30).text
    match = re.search(r"^spatial_mllm_geometry_restarts_total (\S+)$", text, re.M)
    return float(match.group(1)) if match else 0.0


def _worker_lines(live) -> list[str]:
    """What the server logged about its geometry worker (loads, failed reloads, dispatcher trouble)."""
    return [line for line in live.log.read_text(errors="replace").splitlines() if "geometry" in line]


def _until(status: int, url: str, timeout_s: float, live) -> httpx.Response:
    deadline = time.monotonic() + timeout_s
    while True:
        reply = httpx.get(url, timeout=10)
        if reply.status_code == status:
            return reply
        assert time.monotonic() < deadline, (
            f"{url} still answers {reply.status_code}: {reply.text}\nthe server on its geometry worker:\n"
            + "\n".join(_worker_lines(live)[-20:])
        )
        time.sleep(0.2)


def _until_a_reload_failed(live, before: int, timeout_s: float) -> None:
    """Wait for a reload of the worker to fail (its weights are hidden): the retry path, not just a slow load."""
    deadline = time.monotonic() + timeout_s
    while sum("restarting the geometry worker failed" in line for line in _worker_lines(live)) <= before:
        assert time.monotonic() < deadline, "no failed reload logged:\n" + "\n".join(_worker_lines(live)[-20:])
        time.sleep(0.5)


def test_a_dead_geometry_worker_makes_the_server_unready_but_alive(
    live, tiny_checkpoint: Path, room_video: Path
) -> None:
    ready = httpx.get(f"{live.base}/ready", timeout=10)
    assert ready.status_code == 200, ready.text
    assert ready.json() == {"status": "ready", "parts": {"engine": "ready", "geometry_worker": "ready"}}
    worker, restarts = _geometry_worker(live), _restarts(live)
    failed_reloads = sum("restarting the geometry worker failed" in line for line in _worker_lines(live))
    question = {
        "model": "spatial-mllm-tiny",
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "video_url", "video_url": {"url": data_url(room_video)}},
                    {"type": "text", "text": "How many chairs?"},
                ],
            }
        ],
        "max_tokens": 4,
        "temperature": 0,
        "video_sampling": {"strategy": "uniform", "num_frames": 4},
    }
    with _weights_hidden(tiny_checkpoint):
        os.kill(worker.pid, signal.SIGKILL)
        unready = _until(503, f"{live.base}/ready", 30, live)
        body = unready.json()
        assert body["parts"] == {"engine": "ready", "geometry_worker": "loading"}
        assert body["error"]["code"] == 503 and "space-aware sampling worker" in body["error"]["message"]
        assert unready.headers["retry-after"]
        assert httpx.get(f"{live.base}/health", timeout=10).status_code == 200  # alive: no pod restart
        answer = httpx.post(f"{live.base}/v1/chat/completions", json=question, headers=live.headers, timeout=300)
        assert answer.status_code == 200, answer.text
        assert answer.json()["usage"]["completion_tokens"] == 4
        # still not ready: the answer came while the worker was down (it cannot load without its weights)
        assert httpx.get(f"{live.base}/ready", timeout=10).status_code == 503
        assert httpx.get(f"{live.base}/health", timeout=10).status_code == 200
        _until_a_reload_failed(live, failed_reloads, 180)
    _until(200, f"{live.base}/ready", 180, live)
    assert _geometry_worker(live).pid != worker.pid
    assert _restarts(live) >= restarts + 1

"""Helpers for tests that run a server in a child process: a free port, readiness polling, a clean stop."""

from __future__ import annotations

import contextlib
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx
import psutil
import pytest


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


READY_LINE = "spatial-mllm-serve is ready"


def wait_until_ready(
    base: str,
    process: subprocess.Popen,
    log: Path,
    timeout_s: float,
    ready_line: str | None = None,
    headers: dict[str, str] | None = None,
) -> list[int]:
    """Poll ``/health`` until 200; returns the statuses seen (a 503 while loading is part of our contract).

    With ``ready_line`` (our server's), wait for that line in the log instead: the moment it shows, ``/health``
    and ``/v1/models`` (with ``headers``: an API key) must answer 200 on the first try, which is what the line
    promises an operator."""
    seen: list[int] = []
    deadline = time.monotonic() + timeout_s
    while True:
        if process.poll() is not None:
            pytest.fail(f"server exited with {process.returncode}:\n{log.read_text()[-4000:]}")
        if ready_line is not None and ready_line in log.read_text(errors="replace"):
            return [*seen, *_answering_at_once(base, log, headers or {})]
        try:
            status = httpx.get(f"{base}/health", timeout=2).status_code
            seen.append(status)
            if status == 200 and ready_line is None:
                return seen
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"server not ready after {timeout_s} s:\n{log.read_text()[-4000:]}")
        time.sleep(0.25 if ready_line is not None else 1)


def _answering_at_once(base: str, log: Path, headers: dict[str, str]) -> list[int]:
    """``/health`` and ``/v1/models`` asked once each (no retry): both must be 200."""
    with httpx.Client(base_url=base, headers=headers, timeout=30, trust_env=False) as client:
        health = client.get("/health").status_code
        models = client.get("/v1/models")
    assert health == 200 and models.status_code == 200 and models.json()["data"], (
        f"the ready line was printed, but /health {health}, /v1/models {models.status_code}:\n"
        f"{log.read_text(errors='replace')[-4000:]}"
    )
    return [health]


def stop(process: subprocess.Popen, timeout_s: float = 60) -> None:
    """SIGTERM, then SIGKILL if the process has not exited in ``timeout_s``."""
    process.terminate()
    _exited_or_killed(process, timeout_s)


def _exited_or_killed(process: subprocess.Popen, timeout_s: float) -> bool:
    """Wait up to ``timeout_s`` for the process to exit; kill it if it has not. True when it exited by itself."""
    try:
        process.wait(timeout=timeout_s)
        return True
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        return False


def has_traceback(log_text: str) -> bool:
    """A traceback in a server's log, less vLLM's own report of its shutdown race.

    vLLM stops its engine before it cancels the task that reads the engine's output; when that task reads first it
    logs "AsyncLLM output_handler failed" with an ``EngineDeadError`` traceback at ERROR, every line tagged
    ``[async_llm.py:N]``. It happens on a stop the operator asked for, more often under load and always with data
    parallel; nothing of ours is in it, and a traceback from our code (or any other) still counts.
    """
    ours = [line for line in log_text.splitlines() if not re.search(r" ERROR .*\[async_llm\.py:\d+\]", line)]
    return any("Traceback" in line for line in ours)


def stop_cleanly(
    process: subprocess.Popen, log: Path, timeout_s: float = 300, signum: signal.Signals = signal.SIGTERM
) -> None:
    """Stop a serving server with ``signum`` (SIGTERM: an orchestrator; SIGINT: Ctrl-C) and check the stop an
    operator relies on: exit code 0, every process it started gone, its one "stopped" line, and no traceback
    written after the signal (:func:`has_traceback`)."""
    tree = [psutil.Process(process.pid)]
    with contextlib.suppress(psutil.Error):
        tree += tree[0].children(recursive=True)
    before = log.stat().st_size
    process.send_signal(signum)
    if not _exited_or_killed(process, timeout_s):
        pytest.fail(f"the server did not exit within {timeout_s} s of {signum.name}:\n{log.read_text()[-4000:]}")
    _, alive = psutil.wait_procs(tree, timeout=60)
    after = log.read_text(errors="replace")[before:]
    assert process.returncode == 0, after[-4000:]
    assert not [p for p in alive if p.status() != psutil.STATUS_ZOMBIE], f"left running: {alive}\n{after[-2000:]}"
    assert not has_traceback(after), after[-4000:]
    assert "spatial-mllm-serve: stopped" in after, after[-4000:]

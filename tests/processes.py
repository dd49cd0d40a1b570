"""Helpers for tests that run a server in a child process: a free port, readiness polling, a clean stop."""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

import httpx
import pytest


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_ready(base: str, process: subprocess.Popen, log: Path, timeout_s: float) -> list[int]:
    """Poll ``/health`` until 200; returns the statuses seen (a 503 while loading is part of our contract)."""
    seen: list[int] = []
    deadline = time.monotonic() + timeout_s
    while True:
        if process.poll() is not None:
            pytest.fail(f"server exited with {process.returncode}:\n{log.read_text()[-4000:]}")
        try:
            status = httpx.get(f"{base}/health", timeout=2).status_code
            seen.append(status)
            if status == 200:
                return seen
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"server not ready after {timeout_s} s:\n{log.read_text()[-4000:]}")
        time.sleep(1)


def stop(process: subprocess.Popen, timeout_s: float = 60) -> None:
    """SIGTERM, then SIGKILL if the process has not exited in ``timeout_s``."""
    process.terminate()
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()

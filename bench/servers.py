"""Start servers for benchmarks in child processes: ours (``python -m server``) and plain ``vllm serve``.

Both get the same checkpoint and the same CPU engine options, so a comparison measures the layers in front of
the engine, not the engine.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

ENGINE_OPTIONS = ["--dtype", "float32", "--max-model-len", "8192", "--enforce-eager", "--max-num-seqs", "8"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def running(command: list[str], log: Path, timeout_s: float = 600) -> Iterator[str]:
    """Run ``command`` (which must accept ``--host/--port``) until /health is 200; yields the base URL."""
    with running_process(command, log, timeout_s) as (base, _):
        yield base


@contextlib.contextmanager
def running_process(
    command: list[str], log: Path, timeout_s: float = 600
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """As :func:`running`, also yielding the process (to read its tree's CPU time)."""
    port = _free_port()
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": os.environ.get("VLLM_CPU_KVCACHE_SPACE", "2")}
    with log.open("w") as out:
        process = subprocess.Popen(
            [*command, "--host", "127.0.0.1", "--port", str(port)], stdout=out, stderr=subprocess.STDOUT, env=env
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"{command[:3]} exited:\n{log.read_text()[-3000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise TimeoutError(f"{command[:3]} not ready after {timeout_s} s")
            time.sleep(1)
        yield base, process
    finally:
        process.terminate()
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()


def ours(checkpoint: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "server", "--model", str(checkpoint), *ENGINE_OPTIONS, *extra]


def plain_vllm(checkpoint: Path, num_frames: int, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(checkpoint), *ENGINE_OPTIONS,
        "--media-io-kwargs", json.dumps({"video": {"num_frames": num_frames}}), *extra,
    ]  # fmt: skip


@contextlib.contextmanager
def suspended(processes: list[subprocess.Popen[bytes]]) -> Iterator[None]:
    """Stop (SIGSTOP) every process tree given for the duration, so servers not being timed use no CPU at all.

    A stopped server keeps its sockets and state; SIGCONT resumes it where it was (children first, then each
    server), so its next request finds it as it was left.
    """
    import psutil

    trees = []
    for process in processes:
        root = psutil.Process(process.pid)
        trees.append([root, *root.children(recursive=True)])
    for tree in trees:
        for member in tree:
            with contextlib.suppress(psutil.NoSuchProcess):
                member.suspend()
    try:
        yield
    finally:
        for tree in trees:
            for member in reversed(tree):
                with contextlib.suppress(psutil.NoSuchProcess):
                    member.resume()

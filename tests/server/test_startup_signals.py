"""SIGTERM or SIGINT while the engine starts ends the whole process tree: no EngineCore or worker left behind,
one log line, no traceback."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from processes import free_port

pytestmark = pytest.mark.engine

DEADLINE_S = 300.0


def _alive(process: psutil.Process) -> bool:
    try:
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _group_members(pgid: int) -> list[psutil.Process]:
    """Live processes of the process group the server was started in (it and everything it started)."""
    members = []
    for process in psutil.process_iter():
        try:
            if os.getpgid(process.pid) == pgid and _alive(process):
                members.append(process)
        except (ProcessLookupError, psutil.Error):
            continue
    return members


def _wait_for(condition, what: str, log: Path) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"{what} not within {DEADLINE_S} s:\n{log.read_text(errors='replace')[-4000:]}")
        time.sleep(0.2)


def _engine_started(server: psutil.Process) -> bool:
    try:
        return any("EngineCore" in child.name() for child in server.children(recursive=True))
    except psutil.Error:
        return False


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_during_engine_start_up_leaves_no_process(
    tiny_checkpoint: Path, tmp_path: Path, signum: signal.Signals
) -> None:
    log = tmp_path / "server.log"
    command = [
        sys.executable, "-m", "server", "--model", str(tiny_checkpoint),
        "--host", "127.0.0.1", "--port", str(free_port()),
        "--dtype", "float32", "--max-model-len", "4096", "--enforce-eager", "--max-num-seqs", "4",
    ]  # fmt: skip
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1"}
    with log.open("w") as out:
        # a session of its own, so the test can find every process the server started by its process group
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    server = psutil.Process(process.pid)
    try:
        _wait_for(lambda: _engine_started(server) or process.poll() is not None, "engine start", log)
        assert process.poll() is None, log.read_text()
        tree = [server, *server.children(recursive=True)]
        process.send_signal(signum)
        process.wait(timeout=DEADLINE_S)
        _wait_for(lambda: not any(_alive(member) for member in tree), "every process of the tree gone", log)
        _wait_for(lambda: not _group_members(process.pid), "process group empty", log)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    text = log.read_text(errors="replace")
    assert process.returncode == 128 + signum, text[-4000:]
    assert "Traceback" not in text, text[-4000:]
    assert [line for line in text.splitlines() if line.startswith("spatial-mllm-serve:")] == [
        f"spatial-mllm-serve: {signal.Signals(signum).name} received before the server was up; stopping."
    ]

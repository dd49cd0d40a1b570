"""SIGTERM or SIGINT at any moment ends the whole process tree with exit code 0, one line of ours and no
traceback: while the engine starts and while the app starts (the geometry worker loading) here; while serving at
the stop of every server ``conftest.start_server`` starts (SIGTERM; SIGINT for the second replica of
``test_replicas``), where the ready line's promise is checked too: the moment it shows, ``/health`` and
``/v1/models`` answer 200 on the first try."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from conftest import KV_CACHE, engine_environment
from processes import free_port, has_traceback

pytestmark = pytest.mark.engine

DEADLINE_S = 300.0
START_DEADLINE_S = 600.0  # a whole start on 2 cores shared with other jobs


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


def _start(checkpoint: Path, port: int, log: Path) -> subprocess.Popen:
    command = [
        sys.executable, "-m", "server", "--model", str(checkpoint), "--host", "127.0.0.1", "--port", str(port),
        "--dtype", "float32", "--max-model-len", "4096", "--enforce-eager", "--max-num-seqs", "4",
        "--kv-cache-memory-bytes", KV_CACHE,
    ]  # fmt: skip
    env = engine_environment()
    with log.open("w") as out:
        # a session of its own, so the test can find every process the server started by its process group
        return subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)


def _stop_with(process: subprocess.Popen, signum: signal.Signals, log: Path) -> str:
    """Send ``signum``; the server and everything it started must go, with exit code 0, one line of ours and no
    traceback. Returns that line."""
    server = psutil.Process(process.pid)
    try:
        tree = [server, *server.children(recursive=True)]
        process.send_signal(signum)
        process.wait(timeout=DEADLINE_S)
        _wait_for(lambda: not any(_alive(member) for member in tree), "every process of the tree gone", log)
        _wait_for(lambda: not _group_members(process.pid), "process group empty", log)
    finally:
        _kill_group_if_running(process)
    text = log.read_text(errors="replace")
    assert process.returncode == 0, text[-4000:]
    assert not has_traceback(text), text[-4000:]
    ours = [line for line in text.splitlines() if line.startswith("spatial-mllm-serve:")]
    assert len(ours) == 1, text[-4000:]
    return ours[0]


def _kill_group_if_running(process: subprocess.Popen) -> None:
    """SIGKILL the server's whole process group if the server is still running (a test that failed midway)."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def _log_shows(log: Path, text: str) -> bool:
    return text in log.read_text(errors="replace")


def _wait_for_line(process: subprocess.Popen, log: Path, text: str) -> None:
    """Until the server's log shows ``text`` (polled often: the tests act the moment it appears)."""
    deadline = time.monotonic() + START_DEADLINE_S
    while not _log_shows(log, text) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert process.poll() is None and _log_shows(log, text), log.read_text(errors="replace")[-4000:]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_during_engine_start_up_leaves_no_process(
    tiny_checkpoint: Path, tmp_path: Path, signum: signal.Signals
) -> None:
    log = tmp_path / "server.log"
    process = _start(tiny_checkpoint, free_port(), log)
    try:
        server = psutil.Process(process.pid)
        _wait_for(lambda: _engine_started(server) or process.poll() is not None, "engine start", log)
        assert process.poll() is None, log.read_text()
    finally:
        line = _stop_with(process, signum, log)
    assert line == f"spatial-mllm-serve: {signal.Signals(signum).name} received before the server was up; stopping."


def test_signal_while_the_app_starts_leaves_no_process(tiny_checkpoint: Path, tmp_path: Path) -> None:
    """The engine is up and uvicorn runs the app's start-up (the geometry worker loading VGGT): vLLM's handler
    has taken over, and the stop must still end in one line and exit 0."""
    log = tmp_path / "server.log"
    process = _start(tiny_checkpoint, free_port(), log)
    try:
        _wait_for_line(process, log, "Waiting for application startup")
        assert not _log_shows(log, "spatial-mllm-serve is ready"), "too late: the app had already started"
    finally:
        line = _stop_with(process, signal.SIGTERM, log)
    assert line.startswith("spatial-mllm-serve: stopped")


def _child_named(server: psutil.Process, part: str, log: Path) -> psutil.Process:
    """The first descendant whose command line contains ``part`` (polled often: the test acts the moment it
    appears)."""
    deadline = time.monotonic() + START_DEADLINE_S
    while time.monotonic() < deadline:
        with contextlib.suppress(psutil.Error):
            for child in server.children(recursive=True):
                with contextlib.suppress(psutil.Error):
                    if part in " ".join(child.cmdline()) or part in child.name():
                        return child
        if not server.is_running():
            break
        time.sleep(0.02)
    pytest.fail(f"no process {part!r}:\n{log.read_text(errors='replace')[-4000:]}")


def _hold_starting_processes(server: psutil.Process, held: set[int]) -> set[int]:
    """Suspend every process the server started that is neither vLLM's engine (``VLLM::...``) nor multiprocessing's
    resource tracker (it must stay free to exit after the server); returns the pids held so far.

    The geometry worker is among them from its first instant: it takes its name only after seconds of imports,
    and loads VGGT in well under a second after that, too short a window to catch it by name. Its first instant is
    its ``exec``: before it, the child still has the server's command line and is a ``vfork`` child (how Python
    spawns a process) whose parent thread waits until it execs, so holding it then would hold the server's event
    loop for good (seen once in a full run: the server never noticed the dead engine)."""
    with contextlib.suppress(psutil.Error):
        server_command = server.cmdline()
        for child in server.children(recursive=True):
            with contextlib.suppress(psutil.Error):
                if child.pid in held or child.name().startswith("VLLM::"):
                    continue
                command = child.cmdline()
                if command == server_command or "multiprocessing.resource_tracker import main" in " ".join(command):
                    continue
                child.suspend()
                held = held | {child.pid}
    return held


def test_an_engine_death_while_the_app_starts_ends_the_server(tiny_checkpoint: Path, tmp_path: Path) -> None:
    """The engine dies while the app starts (the geometry worker loading VGGT): the server exits non-zero at once
    with a line naming the cause, and leaves no process. It used to wait for ever with ``/health`` unanswered, so a
    supervisor could not tell a slow start from a dead one."""
    log = tmp_path / "server.log"
    process = _start(tiny_checkpoint, free_port(), log)
    try:
        _wait_for_line(process, log, "Waiting for application startup")
        server = psutil.Process(process.pid)
        # the app's start-up holds still while the engine dies, and every process it starts (the geometry worker
        # among them) is held, so the start-up cannot finish first however fast VGGT loads on a given machine
        server.suspend()
        held = _hold_starting_processes(server, set())
        _child_named(server, "EngineCore", log).kill()
        server.resume()
        deadline = time.monotonic() + DEADLINE_S
        while process.poll() is None and time.monotonic() < deadline:
            held = _hold_starting_processes(server, held)  # a process the start-up spawns from now on
            time.sleep(0.02)
        process.wait(timeout=1)
        _wait_for(lambda: not _group_members(process.pid), "process group empty", log)
    finally:
        _kill_group_if_running(process)
    text = log.read_text(errors="replace")
    assert process.returncode != 0, text[-4000:]
    assert "the engine died while the server was starting" in text, text[-4000:]
    assert not _log_shows(log, "spatial-mllm-serve is ready"), text[-4000:]

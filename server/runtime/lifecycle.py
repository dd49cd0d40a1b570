"""Signals before the server serves: SIGINT or SIGTERM at any moment of start-up ends the whole process tree.

vLLM's engine runs in child processes (``EngineCore`` and its worker). Python's default SIGTERM kills only this
process and leaves them orphaned with the model in memory; its SIGINT becomes an exception that the blocked
start-up only sees tens of seconds later, and then unwinds through three processes' tracebacks. So from the
first line of ``main`` on, both signals run :func:`_stop_now`: one log line, children killed, exit 0. Once
vLLM's ``serve_http`` runs, its own handlers drain requests and stop the engine (:mod:`server.runtime.ready_line` covers
a stop before uvicorn has started).
"""

from __future__ import annotations

import os
import signal
import sys
from types import FrameType

import psutil

CHILD_STOP_TIMEOUT_S = 5.0
TRACKER_WARNINGS = "ignore:resource_tracker:UserWarning"


def stop_children(timeout_s: float = CHILD_STOP_TIMEOUT_S) -> None:
    """Kill every descendant of this process and wait until they are gone.

    During start-up the engine holds nothing worth a graceful stop, and a SIGTERM makes each engine process print
    its own traceback of the interrupted start-up; SIGKILL ends them at once and silently (the OS frees their
    memory, GPU memory included). The tree is frozen first (SIGSTOP until a listing finds no process it has not
    stopped), because a process killed while it spawns a child leaves that child reading a half-written start-up
    pipe, and the child prints an ``EOFError`` traceback; a stopped process spawns nothing. Python's
    multiprocessing resource tracker is left alone: it exits by itself, after unlinking the shared memory the killed
    processes registered, as soon as this process is gone.
    """
    frozen: dict[int, psutil.Process] = {}
    while True:
        found = [child for child in _descendants() if child.pid not in frozen]
        if not found:
            break
        for child in found:
            frozen[child.pid] = child
            try:
                child.suspend()
            except psutil.Error:
                continue
    for child in frozen.values():
        try:
            child.kill()
        except psutil.Error:
            continue
    psutil.wait_procs(list(frozen.values()), timeout=timeout_s)


def _descendants() -> list[psutil.Process]:
    """This process's descendants, less the multiprocessing resource tracker."""
    children = []
    for child in psutil.Process().children(recursive=True):
        try:
            if "multiprocessing.resource_tracker" not in " ".join(child.cmdline()):
                children.append(child)
        except psutil.Error:
            continue
    return children


def _stop_now(signum: int, _: FrameType | None) -> None:
    """A stop the operator asked for is a clean exit (0), so ``make demo`` or a supervisor does not report a
    failure."""
    name = signal.Signals(signum).name
    print(f"spatial-mllm-serve: {name} received before the server was up; stopping.", file=sys.stderr, flush=True)
    stop_children()
    os._exit(0)


def exit_on_signals() -> None:
    """From now until vLLM's server installs its own handlers, SIGINT/SIGTERM end this process tree at once."""
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _stop_now)
    quiet_resource_tracker()


def quiet_resource_tracker() -> None:
    """No "leaked semaphore / shared_memory objects" warnings when the server stops.

    vLLM's engine processes register shared memory with Python's resource tracker and, when they are stopped,
    leave it to the tracker to unlink; the tracker does, and warns each time. The warning is not for operators:
    the tracker is started later (by the first engine process), and takes its warning filters from ours.
    """
    sys.warnoptions.append(TRACKER_WARNINGS)

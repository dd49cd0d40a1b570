"""Signals before the server serves: SIGINT or SIGTERM at any moment of start-up ends the whole process tree.

vLLM's engine runs in child processes (``EngineCore`` and its worker). Python's default SIGTERM kills only this
process and leaves them orphaned with the model in memory; its SIGINT becomes an exception that the blocked
start-up only sees tens of seconds later, and then unwinds through three processes' tracebacks. So from the
first line of ``main`` on, both signals run :func:`_stop_now`: one log line, children stopped (killed if they
do not stop within a few seconds), exit. Once the server serves, vLLM's ``serve_http`` installs its own
handlers, which drain requests and shut the engine down gracefully.
"""

from __future__ import annotations

import os
import signal
import sys
from types import FrameType

import psutil

CHILD_STOP_TIMEOUT_S = 5.0


def stop_children(timeout_s: float = CHILD_STOP_TIMEOUT_S) -> None:
    """Stop every descendant of this process: SIGTERM, then SIGKILL for those still there after ``timeout_s``.

    Python's multiprocessing resource tracker is left alone: it ignores SIGTERM by design and exits by itself
    (after releasing what it tracks) as soon as this process is gone.
    """
    children = []
    for child in psutil.Process().children(recursive=True):
        try:
            if "multiprocessing.resource_tracker" not in " ".join(child.cmdline()):
                children.append(child)
        except psutil.Error:
            continue
    for child in children:
        try:
            child.terminate()
        except psutil.Error:
            continue
    _, alive = psutil.wait_procs(children, timeout=timeout_s)
    for child in alive:
        try:
            child.kill()
        except psutil.Error:
            continue
    psutil.wait_procs(alive, timeout=timeout_s)


def _stop_now(signum: int, _: FrameType | None) -> None:
    name = signal.Signals(signum).name
    print(f"spatial-mllm-serve: {name} received before the server was up; stopping.", file=sys.stderr, flush=True)
    stop_children()
    os._exit(128 + signum)


def exit_on_signals() -> None:
    """From now until vLLM's server installs its own handlers, SIGINT/SIGTERM end this process tree at once."""
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _stop_now)

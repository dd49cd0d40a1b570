"""A decoder process's loop (:mod:`server.frames.decode_pool`), kept apart so the process imports only the standard
library and its jobs' modules: the pool's own module imports the web stack and vLLM (through
:mod:`server.errors`), which a spawned worker would otherwise load, seconds of CPU and hundreds of MB each.
"""

from __future__ import annotations

from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

READY = "ready"


def serve(conn: Connection, initializer: Callable[[], None] | None) -> None:
    """A worker's loop: run each ``(fn, args)`` received, send back ``(True, result)`` or ``(False, error)``."""
    if initializer is not None:
        initializer()
    conn.send(READY)
    while True:
        try:
            fn, args, large = conn.recv()
            args = tuple(conn.recv_bytes() if i in large else arg for i, arg in enumerate(args))
        except (EOFError, OSError):  # the parent is gone
            return
        try:
            reply: tuple[bool, Any] = (True, fn(*args))
        except Exception as exc:
            reply = (False, exc)
        try:
            conn.send(reply)
        except Exception as exc:  # an unpicklable result or error: say what it was
            conn.send((False, RuntimeError(f"decoder result could not be sent back: {exc!r}")))

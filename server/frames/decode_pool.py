"""A supervised pool of decoder processes: decoding that hangs or crashes costs one request, never the server.

A thread cannot be stopped, so a decoder thread stuck inside ffmpeg (or one that segfaults) either leaks forever
or takes the whole server down. Here each job runs in a worker process; the parent waits for the answer under a
deadline, and a worker that misses it is killed (SIGKILL) and replaced, as is one that dies mid-job. Either way
the request gets a 503 with ``Retry-After`` and the next job goes to a healthy worker.

``await pool.run(fn, *args)`` is the whole interface, like ``run_in_executor``. ``fn`` and ``args`` cross the
process boundary by pickling (so ``fn`` must be a module-level function, in a module that is light to import: a
replacement worker imports it before its first job), and so does the result. Workers are started on demand, up
to ``workers``, with the ``spawn`` method (no forked copy of the server's threads or GPU state), and exit when
the parent goes away (their pipe closes).
"""

from __future__ import annotations

import asyncio
import multiprocessing
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.connection import Connection
from typing import Any

from server.errors import APIError
from server.frames.decode_worker import READY, serve

STARTUP_TIMEOUT_S = 120.0  # a fresh worker imports its job's modules (torch, decord) before it says it is ready


LARGE_ARG_BYTES = 1 << 20


def _send_job(conn: Connection, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
    """Send ``fn(*args)``; large bytes arguments (a video) go as raw messages after it, written straight from
    their buffer: pickling them would first copy them whole while holding the GIL, stalling the event loop."""
    large = {i for i, arg in enumerate(args) if isinstance(arg, bytes | bytearray) and len(arg) > LARGE_ARG_BYTES}
    conn.send((fn, tuple(None if i in large else arg for i, arg in enumerate(args)), large))
    for i in sorted(large):
        conn.send_bytes(args[i])


class _Worker:
    """One worker process and the parent's end of its pipe."""

    def __init__(self, context: Any, initializer: Callable[[], None] | None) -> None:
        self.conn, child = context.Pipe(duplex=True)
        self.process = context.Process(target=serve, args=(child, initializer), daemon=True, name="decoder")
        self.process.start()
        child.close()
        self.stopped = False

    def stop(self) -> None:
        """Kill now (a hung decoder ignores anything gentler) and reap; a second call does nothing."""
        if self.stopped:
            return
        self.stopped = True
        self.process.kill()
        self.process.join()
        self.process.close()  # its sentinel pipe too: a long-running server must not leak descriptors
        self.conn.close()


class WorkerLost(APIError):
    """The job's worker hung past the deadline or died; it was replaced. Retryable: 503 + Retry-After."""


class DecodePool:
    """At most ``workers`` jobs at once, each in its own process, each under ``timeout_s``."""

    def __init__(
        self,
        workers: int,
        timeout_s: float,
        retry_after_s: int,
        initializer: Callable[[], None] | None = None,
    ) -> None:
        self.timeout_s = timeout_s
        self.retry_after_s = retry_after_s
        self.initializer = initializer
        self._context = multiprocessing.get_context("spawn")
        self._slots = asyncio.Semaphore(workers)
        self._idle: list[_Worker] = []
        self._all: set[_Worker] = set()
        self._lock = threading.Lock()
        # waiting for a worker's answer blocks, so it happens on one of these threads, one per job in flight
        self._waiters = ThreadPoolExecutor(workers, thread_name_prefix="decode-wait")
        self.replaced = 0  # workers killed or found dead, for tests and metrics

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(*args)`` in a worker process; its exception is re-raised here, a hang or crash is a 503."""
        await self._slots.acquire()
        job = asyncio.get_running_loop().run_in_executor(self._waiters, self._run_blocking, fn, args)
        job.add_done_callback(lambda _: self._slots.release())  # only once the worker is free (or replaced)
        ok, value = await asyncio.shield(job)  # a caller leaving does not abandon a busy worker
        if ok:
            return value
        raise value

    def _run_blocking(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> tuple[bool, Any]:
        worker = self._take()
        if worker is None:
            message = "No video decoder could be started; retry shortly."
            return False, WorkerLost(503, message, retry_after=self.retry_after_s)
        try:
            _send_job(worker.conn, fn, args)
            if not worker.conn.poll(self.timeout_s):
                self._replace(worker)
                message = f"Decoding the video took longer than {self.timeout_s:g} s and was stopped; retry shortly."
                return False, WorkerLost(503, message, retry_after=self.retry_after_s)
            reply = worker.conn.recv()
        except (EOFError, OSError, BrokenPipeError):
            self._replace(worker)
            message = "The video decoder stopped unexpectedly on this request; retry shortly."
            return False, WorkerLost(503, message, retry_after=self.retry_after_s)
        except BaseException:
            self._replace(worker)  # the pipe's state is unknown: never hand this worker another job
            raise
        self._give_back(worker)
        return reply

    def _take(self) -> _Worker | None:
        """An idle worker, or a new one once it is ready (the job's deadline does not pay for its start)."""
        with self._lock:
            if self._idle:
                return self._idle.pop()
        worker = _Worker(self._context, self.initializer)
        with self._lock:
            self._all.add(worker)
        try:
            if worker.conn.poll(STARTUP_TIMEOUT_S) and worker.conn.recv() == READY:
                return worker
        except (EOFError, OSError):
            pass
        self._replace(worker)
        return None

    def _give_back(self, worker: _Worker) -> None:
        with self._lock:
            if worker in self._all:
                self._idle.append(worker)

    def _replace(self, worker: _Worker) -> None:
        """Kill ``worker``; its successor starts on the next job that needs one."""
        with self._lock:
            self._all.discard(worker)
            self.replaced += 1
        worker.stop()

    def worker_pids(self) -> list[int]:
        with self._lock:
            return [worker.process.pid for worker in self._all if worker.process.pid is not None]

    def shutdown(self) -> None:
        """Kill every worker (jobs in flight fail with 503)."""
        with self._lock:
            workers, self._all, self._idle = list(self._all), set(), []
        for worker in workers:
            worker.stop()
        self._waiters.shutdown(wait=False, cancel_futures=True)

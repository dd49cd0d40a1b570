"""The one owner of space-aware sampling's GPU work: a supervised worker process fed from a bounded queue.

Why a process of its own rather than vLLM's engine process: the engine's memory accounting covers what its model
runner allocates and profiles, and VGGT passes (up to 128 frames of global attention) are neither part of a
model step nor schedulable by it; putting them there would mean forking vLLM's worker. A separate process keeps
the API process to I/O and light CPU work, gives the geometry network an explicit budget that is checked against
the engine's share before anything loads (:func:`plan_geometry`) and enforced by the worker's allocator cap, and
turns a crash or an out-of-memory into a 503 for the requests of that pass, while the engine and every other
answer keep going. The worker loads at start, so a bad checkpoint or device fails start-up, not a user's request.

Passes run one at a time (the worker is single-threaded), in arrival order; at most ``space_aware_queue`` wait
behind the running one and the next gets 503 + Retry-After. A job nobody waits for any more is dropped from the
queue, or, when running, stopped at the next network block.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import logging
import multiprocessing
from argparse import Namespace
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from sampling.geometry_budget import DTYPE_BYTES, GeometryShape, worst_case_bytes
from sampling.geometry_pass import PassResult, WorkerConfig, worker_main
from server.errors import APIError
from server.metrics import GEOMETRY_MEMORY, GEOMETRY_PASSES, GEOMETRY_QUEUE_DEPTH, GEOMETRY_RESTARTS, PASSES_RUNNING
from server.runtime.gpu_layout import engine_share_bytes, geometry_device, visible_gpu_count
from server.runtime.settings import GiB, ServerSettings

LOG = logging.getLogger("spatial_mllm_serve")
T = TypeVar("T")
CUDA_CONTEXT_BYTES = GiB // 2  # a CUDA context lives outside the allocator the budget caps
STOP_TIMEOUT_S = 10.0
LIVENESS_POLL_S = 0.5  # how soon the dispatcher notices a dead worker with no work queued


class GeometryUnavailable(RuntimeError):
    """The worker could not load its network (bad weights, device, or budget)."""


def geometry_source(model: str, settings: ServerSettings) -> Path | None:
    """Where VGGT weights for space-aware sampling come from: the configured file, else the served checkpoint."""
    if settings.space_aware_weights is not None:
        return settings.space_aware_weights
    local = Path(model)
    if local.is_dir():
        return local
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(model, allow_patterns=["*.json", "*.safetensors"], local_files_only=True))
    except Exception:
        LOG.warning("no local copy of %s: space-aware sampling is unavailable", model)
        return None


def _device_bytes(device: str) -> int:
    if device.startswith("cuda"):
        from vllm.platforms import current_platform

        return int(current_platform.get_device_total_memory(int(device.partition(":")[2] or 0)))
    import psutil

    return int(psutil.virtual_memory().total)


def budget_refusal(args: Namespace, device: str, total: int, budget: int) -> str | None:
    """Why ``budget`` does not fit on ``device`` (``total`` bytes) beside the engine that shares it, or None.

    With data parallelism every GPU may run an engine (:mod:`server.runtime.gpu_layout`); only the one on the worker's
    device counts, with its ``--gpu-memory-utilization`` share."""
    engine = engine_share_bytes(args, device, total)
    overhead = CUDA_CONTEXT_BYTES if device.startswith("cuda") else 0
    if budget + overhead + engine <= total:
        return None
    return (
        f"the space-aware budget ({budget / GiB:.3g} GiB) plus the share of the engine on {device} "
        f"({engine / GiB:.3g} GiB) exceed {device} ({total / GiB:.3g} GiB): lower --gpu-memory-utilization or "
        "--space-aware-budget-gib, or move it with --space-aware-device."
    )


def plan_geometry(args: Namespace, settings: ServerSettings) -> WorkerConfig | None:
    """The worker's configuration, or None when no VGGT weights are at hand (space-aware requests get a 400).

    Refuses (SystemExit with one line saying what to change) when the budget cannot hold one pass of
    ``--space-aware-candidates`` frames at VGGT's largest input, or when budget plus the engine's share exceed
    the device. Reads only checkpoint headers: cheap, and before the engine loads.
    """
    source = geometry_source(args.model, settings)
    if source is None:
        return None
    device = geometry_device(settings.space_aware_device, visible_gpu_count())  # pre-flight checked the setting
    dtype = "bfloat16" if device.startswith("cuda") else "float32"
    need = worst_case_bytes(GeometryShape.of(source), settings.space_aware_candidates, DTYPE_BYTES[dtype])
    budget = int(settings.space_aware_budget_gib * GiB) or need
    if budget < need:
        raise SystemExit(
            f"spatial-mllm-serve: --space-aware-budget-gib {budget / GiB:.3g} cannot hold one VGGT pass of "
            f"{settings.space_aware_candidates} candidates (about {need / GiB:.3g} GiB): raise it, or lower "
            "--space-aware-candidates."
        )
    total = _device_bytes(device)
    if (refusal := budget_refusal(args, device, total, budget)) is not None:
        raise SystemExit(f"spatial-mllm-serve: {refusal}")
    return WorkerConfig(source, device, dtype, budget, total)


@dataclass(eq=False)
class _Job:
    id: int
    images: np.ndarray
    k: int
    result: asyncio.Future[PassResult]
    running: bool = field(default=False)


class GeometryWorker:
    """Owns the worker process: start (load) and stop it, queue passes, restart it when it dies."""

    def __init__(self, config: WorkerConfig, max_queue: int, retry_after_s: int) -> None:
        self.config = config
        self.max_queue = max_queue
        self.retry_after_s = retry_after_s
        self._context = multiprocessing.get_context("spawn")  # never fork a process that holds CUDA or threads
        self._cancel = self._context.Value("q", -1, lock=False)
        self._ids = itertools.count()
        self._queue: collections.deque[_Job] = collections.deque()
        self._wakeup = asyncio.Event()
        self._process: multiprocessing.process.BaseProcess | None = None
        self._conn = None
        self._dispatcher: asyncio.Task[None] | None = None
        self._running: _Job | None = None
        # threads of its own for the blocking pipe calls (a recv lasts a whole load or pass): the event loop's
        # default executor, shared with uploads and the engine's front end, never waits behind them
        self._threads = ThreadPoolExecutor(2, thread_name_prefix="geometry")
        # this worker's own counts, beside the process-wide Prometheus series: several workers in one process
        # (tests, or apps wired side by side) each read their own, whatever the others do
        self.passes: collections.Counter[str] = collections.Counter()
        self.restarts = 0
        GEOMETRY_MEMORY.labels("budget").set(config.budget_bytes)

    @property
    def ready(self) -> bool:
        """Loaded and alive (``/ready`` reports 503 otherwise, e.g. while a crashed worker reloads)."""
        return self._process is not None and self._process.is_alive()

    @property
    def busy(self) -> bool:
        """A pass is running (or being handed to the worker)."""
        return self._running is not None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    async def start(self) -> None:
        """Start the process and wait until its network is loaded; :class:`GeometryUnavailable` if it cannot."""
        await self._spawn()
        self._dispatcher = asyncio.create_task(self._dispatch(), name="geometry-dispatcher")

    async def close(self) -> None:
        if self._dispatcher is not None:
            self._dispatcher.cancel()
        while self._queue:
            self._fail(self._queue.popleft(), "The server is shutting down.")
        await self._retire()
        self._threads.shutdown(wait=False)

    def _in_thread(self, fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        return asyncio.get_running_loop().run_in_executor(self._threads, fn, *args)

    async def select(self, images: np.ndarray, k: int, param: str) -> PassResult:
        """Run one pass on uint8 candidate images [T, 3, h, w] and choose ``k`` of them.

        503 + Retry-After when the queue is full or the worker died during the pass. Cancelling the caller
        withdraws the job (stopping its pass if it is running)."""
        if len(self._queue) >= self.max_queue:
            raise APIError(
                503, "Space-aware sampling is at capacity; retry shortly.", param, retry_after=self.retry_after_s
            )
        job = _Job(next(self._ids), images, k, asyncio.get_running_loop().create_future())
        self._queue.append(job)
        GEOMETRY_QUEUE_DEPTH.set(len(self._queue))
        self._wakeup.set()
        try:
            return await job.result
        except asyncio.CancelledError:
            if job in self._queue:
                self._queue.remove(job)
                GEOMETRY_QUEUE_DEPTH.set(len(self._queue))
            elif job.running:
                self._cancel.value = job.id
            raise

    async def _dispatch(self) -> None:
        """Run queued passes in order, reloading the worker whenever it is found dead. Nothing a pass or a reload
        raises ends this loop: a dead dispatcher would leave every later space-aware request waiting forever and
        ``/ready`` at 503 for good."""
        while True:
            try:
                await self._dispatch_next()
            except asyncio.CancelledError:
                raise
            except Exception:
                LOG.exception("the geometry dispatcher failed; going on in %s s", self.retry_after_s)
                await asyncio.sleep(self.retry_after_s)

    async def _dispatch_next(self) -> None:
        if not self.ready:  # it died (seen by the poll below) or a pass lost it: load a new one before more work
            await self._restart()
        if not self._queue:
            # wake for new work at once, and for a dead worker within a poll (``is_alive`` is a non-blocking
            # waitpid): no event-loop reader on the process's sentinel pipe, whose descriptor number the process
            # object's finaliser may close after a newer worker reused it
            self._wakeup.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), LIVENESS_POLL_S)
            return
        job = self._queue.popleft()
        GEOMETRY_QUEUE_DEPTH.set(len(self._queue))
        if not job.result.done():
            await self._run(job)

    async def _run(self, job: _Job) -> None:
        """Hand ``job`` to the worker and settle its future, whatever happens: no job is left waiting."""
        job.running, self._running = True, job
        PASSES_RUNNING.inc()
        try:
            self._settle(job, await self._in_thread(self._exchange, job))
        except (EOFError, OSError):
            self._count_pass("lost")
            self._fail(job, "The space-aware sampling worker stopped during this request; retry.")
        except Exception:  # one job's failure is its own: fail it and start clean, the pipe may be mid-message
            LOG.exception("handing a pass to the geometry worker failed")
            self._count_pass("failed")
            self._fail(job, "The space-aware sampling pass failed on the server; retry.")
            await self._retire()
        finally:
            job.running, self._running = False, None
            PASSES_RUNNING.dec()

    def _exchange(self, job: _Job) -> tuple:
        """Send one job and wait for its outcome (in a thread: the pipe blocks)."""
        self._conn.send((job.id, job.images, job.k))
        while True:
            reply = self._conn.recv()
            if reply[0] != "started":
                return reply

    def _settle(self, job: _Job, reply: tuple) -> None:
        kind, _, payload = reply
        self._count_pass({"done": "done", "cancelled": "cancelled"}.get(kind, "failed"))
        if job.result.done():
            return
        if kind == "done":
            GEOMETRY_MEMORY.labels("last_pass_peak").set(payload.peak_bytes)
            job.result.set_result(payload)
        elif kind == "cancelled":
            job.result.cancel()
        else:
            LOG.error("space-aware pass failed: %s", payload)
            self._fail(job, "The space-aware sampling pass failed on the server; retry.")

    def _count_pass(self, outcome: str) -> None:
        self.passes[outcome] += 1
        GEOMETRY_PASSES.labels(outcome).inc()

    def _fail(self, job: _Job, message: str) -> None:
        if not job.result.done():
            job.result.set_exception(APIError(503, message, retry_after=self.retry_after_s))

    async def _spawn(self) -> None:
        parent, child = self._context.Pipe()
        process = self._context.Process(
            target=worker_main, args=(child, self._cancel, self.config), name="geometry-worker", daemon=True
        )
        process.start()
        child.close()
        try:
            kind, detail = await self._in_thread(parent.recv)
        except EOFError:
            kind, detail = "failed", f"the worker exited with code {process.exitcode}"
        except asyncio.CancelledError:
            # start-up stopped (a signal, or the engine died): the half-loaded worker goes too, which also ends our
            # thread blocked in recv (EOF)
            process.kill()
            await self._in_thread(_reap, process, parent)
            raise
        if kind != "ready":
            await self._in_thread(_reap, process, parent)
            raise GeometryUnavailable(f"space-aware sampling could not load VGGT from {self.config.source}: {detail}")
        self._process, self._conn = process, parent
        LOG.info("geometry worker %s ready: %s", process.pid, detail)

    async def _restart(self) -> None:
        """Replace a dead worker; retries (every Retry-After seconds) until the network loads again."""
        self.restarts += 1
        GEOMETRY_RESTARTS.inc()
        await self._retire()
        while True:
            try:
                await self._spawn()
                return
            except Exception:  # a bad load, or the spawn itself failing (out of processes, memory): retry either way
                LOG.exception("restarting the geometry worker failed")
                await asyncio.sleep(self.retry_after_s)

    async def _retire(self) -> None:
        await self._in_thread(self._stop_process)

    def _stop_process(self) -> None:
        process, conn = self._process, self._conn
        self._process, self._conn = None, None
        if conn is not None:
            with contextlib.suppress(OSError):
                conn.send(None)  # asks a live worker to leave; a dead one's pipe is just closed
        if process is not None:
            _reap(process, conn)


def _reap(process: multiprocessing.process.BaseProcess, conn: Connection | None) -> None:
    """Wait for ``process`` to end (killing it after :data:`STOP_TIMEOUT_S`), then close its pipe and its
    sentinel now: left to the garbage collector, the sentinel's descriptor would close at some later moment,
    perhaps after its number went to a newer worker's pipe."""
    if conn is not None:
        conn.close()
    process.join(STOP_TIMEOUT_S)
    if process.is_alive():
        process.kill()
        process.join()
    process.close()

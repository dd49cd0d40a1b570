"""The geometry worker process's side: load VGGT once, then run passes one at a time from a pipe.

Kept apart from :mod:`server.frames.geometry_worker` (the supervising side) so the child process imports only torch and
the sampling code, never vLLM or the web stack. Protocol, one tuple per message:

- child -> parent on start: ``("ready", detail)`` or ``("failed", reason)``;
- parent -> child: ``(job_id, uint8 images [T, 3, h, w], k)``, or ``None`` to stop;
- child -> parent per job: ``("started", job_id)``, then ``("done", job_id, PassResult)``,
  ``("cancelled", job_id, None)`` or ``("error", job_id, reason)``.

A pass is cancelled between network blocks: the parent writes the job id into a shared integer and a forward
pre-hook on every transformer block and point-head step raises when it sees its own job there.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import numpy as np

from sampling.geometry_budget import DTYPE_BYTES, GeometryShape, largest_chunk, pass_bytes


@dataclass(frozen=True)
class WorkerConfig:
    """Everything the worker process needs, decided (and checked against the device) before the engine loads."""

    source: Path  # Spatial-MLLM checkpoint directory or standalone VGGT safetensors file
    device: str  # "cpu" or "cuda:N"
    dtype: str  # key of DTYPE_BYTES
    budget_bytes: int  # the most one pass may hold, weights included
    device_bytes: int  # the device's total memory (caps the allocator on a GPU)


@dataclass(frozen=True)
class PassResult:
    """Chosen candidate positions and what the pass cost."""

    positions: list[int]
    vggt_s: float
    selection_s: float
    chunk: int  # point-head frames per step
    peak_bytes: int  # measured on a GPU, estimated on a CPU
    started: float  # time.monotonic() in the worker (system-wide clock: comparable across processes)
    finished: float


class PassCancelled(Exception):
    """The parent gave up on the running job."""


PROCESS_TITLE = "spatial-mllm-serve::geometry-worker"  # what ps, top and probes' operators see


def worker_main(conn: Connection, cancel: Any, config: WorkerConfig) -> None:
    """Entry point of the worker process (``multiprocessing`` spawn target)."""
    _set_title()
    try:
        network, shape = _load(config)
    except Exception as exc:  # any load failure is reported to the parent, which refuses to start
        conn.send(("failed", f"{type(exc).__name__}: {exc}"))
        return
    running = {"job": -1}
    _install_cancel_hooks(network.vggt, cancel, running)
    conn.send(("ready", f"VGGT on {config.device} ({config.dtype})"))
    while True:
        try:
            message = conn.recv()
        except EOFError:
            return
        if message is None:
            return
        job_id, images, k = message
        running["job"] = job_id
        conn.send(("started", job_id))
        try:
            conn.send(("done", job_id, _run_pass(network, shape, config, images, k)))
        except PassCancelled:
            conn.send(("cancelled", job_id, None))
        except Exception as exc:  # one failed pass (e.g. out of memory) fails its job, not the worker
            conn.send(("error", job_id, f"{type(exc).__name__}: {exc}"))
        finally:
            running["job"] = -1
            _release_cached_memory(config)


def _set_title() -> None:
    """Name the process (setproctitle comes with vLLM, which names its engine processes the same way)."""
    try:
        from setproctitle import setproctitle
    except ImportError:
        return
    setproctitle(PROCESS_TITLE)


def _load(config: WorkerConfig):
    import torch

    from sampling.geometry import GeometryNetwork

    if config.device.startswith("cuda"):
        device = torch.device(config.device)
        torch.cuda.set_per_process_memory_fraction(min(1.0, config.budget_bytes / config.device_bytes), device)
    network = GeometryNetwork.load(config.source, device=config.device, dtype=getattr(torch, config.dtype))
    return network, GeometryShape.of(config.source)


def _install_cancel_hooks(vggt: Any, cancel: Any, running: dict[str, int]) -> None:
    from model_plugin.vggt.layers import Block

    def check(*_: object) -> None:
        if cancel.value == running["job"]:
            raise PassCancelled

    for module in vggt.modules():
        if isinstance(module, Block):
            module.register_forward_pre_hook(check)
    vggt.point_head.scratch.refinenet4.register_forward_pre_hook(check)  # once per point-head step


def _run_pass(network: Any, shape: GeometryShape, config: WorkerConfig, images: np.ndarray, k: int) -> PassResult:
    import torch

    from sampling.geometry import to_unit_float
    from sampling.voxel_cover import select_frames

    started = time.monotonic()
    batch = to_unit_float(torch.from_numpy(images))
    frames, _, height, width = batch.shape
    dtype_bytes = DTYPE_BYTES[config.dtype]
    chunk = largest_chunk(shape, frames, height, width, config.budget_bytes, dtype_bytes) or 1
    on_gpu = config.device.startswith("cuda")
    if on_gpu:
        torch.cuda.reset_peak_memory_stats(network.device)
    tick = time.perf_counter()
    points, conf = network.world_points(batch, frames_chunk_size=chunk)
    if on_gpu:
        torch.cuda.synchronize(network.device)
    vggt_s = time.perf_counter() - tick
    peak = (
        torch.cuda.max_memory_allocated(network.device)
        if on_gpu
        else pass_bytes(shape, frames, height, width, chunk, dtype_bytes)
    )
    tick = time.perf_counter()
    positions = select_frames(points, conf, min(k, frames), fallback="uniform")
    selection_s = time.perf_counter() - tick
    return PassResult([int(p) for p in positions], vggt_s, selection_s, chunk, int(peak), started, time.monotonic())


def _release_cached_memory(config: WorkerConfig) -> None:
    if config.device.startswith("cuda"):
        import torch

        torch.cuda.empty_cache()

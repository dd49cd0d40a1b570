"""Which GPUs of this node vLLM's engines take, and where the geometry worker runs: one rule for the pre-flight
check and the memory plan.

vLLM gives local data-parallel rank ``i`` the visible devices ``[i * W, (i + 1) * W)``, ``W`` being tensor x
pipeline parallel size (``get_physical_gpu_ids_for_local_dp_rank`` in ``vllm/v1/engine/utils.py``), or that slice
of ``--device-ids``. So with ``--data-parallel-size N`` on N GPUs every GPU runs one engine, each taking its own
``--gpu-memory-utilization``, and the geometry worker shares one of them with that engine.

``--space-aware-device auto`` picks the last visible GPU: free when the engines leave GPUs over, otherwise the one
the last engine runs on (all engines have the same share, so any of them would do); ``cpu`` without a GPU.
"""

from __future__ import annotations

import re
from argparse import Namespace

DEVICE_SETTING = re.compile(r"auto|cpu|cuda(?::(\d+))?")


def engines_per_node(args: Namespace) -> int:
    """Engine (data-parallel) processes this server starts on its node."""
    return int(getattr(args, "data_parallel_size_local", None) or getattr(args, "data_parallel_size", 1) or 1)


def engine_gpus(args: Namespace) -> frozenset[int] | None:
    """Visible GPU indices the local engines use; None when ``--device-ids`` names GPUs by UUID (then every GPU
    is assumed to carry an engine)."""
    world = int(args.tensor_parallel_size or 1) * int(args.pipeline_parallel_size or 1)
    count = engines_per_node(args) * world
    device_ids = getattr(args, "device_ids", None)
    if device_ids:
        if not all(isinstance(i, int) or str(i).isdigit() for i in device_ids):
            return None
        return frozenset(int(i) for i in device_ids[:count])
    return frozenset(range(count))


def visible_gpu_count() -> int:
    """CUDA devices this process may use (NVML, no CUDA context in the API process); 0 off CUDA."""
    from vllm.platforms import current_platform

    return int(current_platform.device_count()) if current_platform.is_cuda() else 0


def geometry_device(setting: str, gpu_count: int) -> str:
    """The worker's device for ``--space-aware-device``; ValueError (one line: what to change) when it cannot be."""
    match = DEVICE_SETTING.fullmatch(setting)
    if match is None:
        raise ValueError(f"--space-aware-device {setting}: say auto, cpu, cuda or cuda:N")
    if setting == "cpu":
        return "cpu"
    if setting == "auto":
        return f"cuda:{gpu_count - 1}" if gpu_count else "cpu"
    if not gpu_count:
        raise ValueError(f"--space-aware-device {setting}: this machine has no CUDA GPU; use cpu or auto")
    index = int(match.group(1) or 0)
    if index >= gpu_count:
        raise ValueError(
            f"--space-aware-device {setting}: only {gpu_count} GPU(s) are visible (cuda:0..cuda:{gpu_count - 1})"
        )
    return f"cuda:{index}"


def check_gpus_suffice(args: Namespace, gpu_count: int) -> None:
    """On a GPU node, the engines must find their GPUs (vLLM would fail only after loading for a while)."""
    engines = engine_gpus(args)
    if not gpu_count or engines is None:
        return
    if len(engines) > gpu_count or max(engines, default=0) >= gpu_count:
        raise ValueError(
            f"--data-parallel-size {engines_per_node(args)} x --tensor-parallel-size {args.tensor_parallel_size or 1} "
            f"needs {len(engines)} GPUs, {gpu_count} are visible: lower them or make more GPUs visible"
        )


def engine_share_bytes(args: Namespace, device: str, total: int) -> int:
    """The engine's share of ``device``: ``--gpu-memory-utilization`` x ``total`` when an engine runs on that GPU."""
    if not device.startswith("cuda"):
        return 0
    engines = engine_gpus(args)
    index = int(device.partition(":")[2] or 0)
    shared = engines is None or index in engines
    return int(float(args.gpu_memory_utilization) * total) if shared else 0

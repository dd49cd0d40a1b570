"""The geometry worker's memory plan against a measured pass at full size (VGGT-1B), on the CPU.

``python -m bench.geometry_memory [--checkpoint DIR] [--candidates 8 16 32] [--height 70] [--json OUT]``

Each case runs in a fresh process exactly as the worker does (``sampling.geometry_pass._load`` and
``_run_pass``, the CPU worker's float32, the budget ``plan_geometry`` gives by default, so the same point-head
chunk), on random uint8 candidates of VGGT input ``height`` x 518. Measured: the peak of the process's anonymous
resident memory (``RssAnon``, sampled every 5 ms on a thread; file-backed pages such as the shared libraries are
left out, since a loaded machine evicts them and that would read as less memory) during the pass, minus that of
the bare runtime before VGGT was loaded (so weights count, as in the plan). Compared with
``pass_bytes`` for the same inputs, in total and for the activations alone (total minus the weights), since the
weights dominate small passes and would hide an error in the activation terms.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

DEFAULT_CHECKPOINT = Path.home() / ".cache" / "spatial-mllm-serve" / "full-v1.1"
DTYPE = "float32"  # what the worker runs on a CPU (server/frames/geometry_worker.py plan_geometry)


def _status_bytes(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(field)


class AnonPeak:
    """Peak ``RssAnon`` of this process while in the ``with`` block, sampled on a thread."""

    def __init__(self, interval_s: float = 0.005) -> None:
        import threading

        self.peak = _status_bytes("RssAnon")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(interval_s,), daemon=True)

    def _run(self, interval_s: float) -> None:
        while not self._stop.wait(interval_s):
            self.peak = max(self.peak, _status_bytes("RssAnon"))

    def __enter__(self) -> AnonPeak:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _status_bytes("RssAnon"))


def measure_case(checkpoint: Path, candidates: int, height: int, width: int = 518, seed: int = 0) -> dict[str, Any]:
    """One pass in this process (call in a fresh one): planned and measured bytes."""
    import numpy as np
    import psutil

    from sampling.geometry_budget import DTYPE_BYTES, GeometryShape, largest_chunk, pass_bytes, worst_case_bytes
    from sampling.geometry_pass import WorkerConfig, _load, _run_pass

    runtime = _status_bytes("RssAnon")
    shape = GeometryShape.of(checkpoint)
    dtype_bytes = DTYPE_BYTES[DTYPE]
    budget = worst_case_bytes(shape, candidates, dtype_bytes)  # plan_geometry's default budget
    config = WorkerConfig(checkpoint, "cpu", DTYPE, budget, psutil.virtual_memory().total)
    network, shape = _load(config)
    loaded = _status_bytes("RssAnon")
    images = np.random.default_rng(seed).integers(0, 256, (candidates, 3, height, width), dtype=np.uint8)
    with AnonPeak() as sampler:
        result = _run_pass(network, shape, config, images, k=min(8, candidates))
    peak = sampler.peak
    chunk = largest_chunk(shape, candidates, height, width, budget, dtype_bytes) or 1
    planned = pass_bytes(shape, candidates, height, width, chunk, dtype_bytes)
    weights = shape.weight_elements * dtype_bytes
    measured = peak - runtime
    return {
        "candidates": candidates,
        "height": height,
        "width": width,
        "dtype": DTYPE,
        "chunk": chunk,
        "weights_bytes": weights,
        "planned_bytes": planned,
        "measured_bytes": measured,
        "ratio": round(measured / planned, 3),
        "planned_activation_bytes": planned - weights,
        "measured_activation_bytes": peak - loaded,
        "activation_ratio": round((peak - loaded) / (planned - weights), 3),
        "runtime_anon_bytes": runtime,
        "loaded_anon_bytes": loaded,
        "vggt_s": round(result.vggt_s, 1),
    }


def measure(checkpoint: Path, candidates: Sequence[int], height: int) -> list[dict[str, Any]]:
    """Every case in its own process (a fresh high-water mark and allocator each time)."""
    rows = []
    for count in candidates:
        command = [sys.executable, "-m", "bench.geometry_memory", "--checkpoint", str(checkpoint), "--case", str(count)]
        out = subprocess.run([*command, "--height", str(height)], check=True, capture_output=True, text=True)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    return rows


def extrapolate(checkpoint: Path, candidates: int = 128, height: int = 392, width: int = 518) -> dict[str, Any]:
    """The plan for a pass the CPU cannot run here, in both worker dtypes."""
    from sampling.geometry_budget import DTYPE_BYTES, GeometryShape, largest_chunk, pass_bytes, worst_case_bytes

    shape = GeometryShape.of(checkpoint)
    out: dict[str, Any] = {"candidates": candidates, "height": height, "width": width}
    for dtype in ("float32", "bfloat16"):
        size = DTYPE_BYTES[dtype]
        budget = worst_case_bytes(shape, candidates, size)
        chunk = largest_chunk(shape, candidates, height, width, budget, size) or 1
        out[dtype] = {
            "chunk": chunk,
            "planned_bytes": pass_bytes(shape, candidates, height, width, chunk, size),
            "budget_bytes": budget,
        }
    return out


def to_markdown(rows: list[dict[str, Any]], projection: dict[str, Any]) -> str:
    gib = 2**30
    lines = [
        "| candidates | VGGT input | chunk | planned GiB | measured GiB | measured / planned | planned act. GiB "
        "| measured act. GiB | act. ratio | VGGT s (loaded) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        lines.append(
            f"| {r['candidates']} | {r['height']}x{r['width']} | {r['chunk']} | {r['planned_bytes'] / gib:.2f} "
            f"| {r['measured_bytes'] / gib:.2f} | {r['ratio']:.2f} | {r['planned_activation_bytes'] / gib:.2f} "
            f"| {r['measured_activation_bytes'] / gib:.2f} | {r['activation_ratio']:.2f} | {r['vggt_s']} |"
        )
    p = projection
    lines.append(
        f"\nPlan at {p['candidates']} candidates of {p['height']}x{p['width']}: "
        f"{p['float32']['planned_bytes'] / gib:.1f} GiB in float32 (CPU worker, chunk {p['float32']['chunk']}), "
        f"{p['bfloat16']['planned_bytes'] / gib:.1f} GiB in bfloat16 (GPU worker, chunk {p['bfloat16']['chunk']})."
    )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.geometry_memory", description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, default=DEFAULT_CHECKPOINT)
    parser.add_argument("--candidates", type=int, nargs="+", default=[8, 16, 32])
    parser.add_argument("--height", type=int, default=70, help="VGGT input height (width is 518)")
    parser.add_argument("--case", type=int, default=None, help=argparse.SUPPRESS)  # one case, this process
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.case is not None:
        print(json.dumps(measure_case(args.checkpoint, args.case, args.height)))
        return
    rows = measure(args.checkpoint, args.candidates, args.height)
    projection = extrapolate(args.checkpoint)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"rows": rows, "projection": projection}, indent=2) + "\n")
    print(to_markdown(rows, projection))


if __name__ == "__main__":
    main()

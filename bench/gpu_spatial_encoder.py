"""The spatial encoder at its real size on a GPU: VGGT-1B aggregator, the space-aware pass, the connector.

``bench/gpu/run.sh`` (one command, PyTorch only: no vLLM, no network, random weights) runs
``python -m bench.gpu_spatial_encoder --device cuda --dtype bfloat16 --json docs/bench/gpu_spatial_encoder.json``;
``python -m bench.gpu_spatial_encoder --device cpu --tiny`` checks the script itself on a CPU (CI does).

Cases (VGGT-1B sizes: 24 frame + 24 global blocks of width 1024, DINOv2-L patch embed; attention through
``torch.nn.functional.scaled_dot_product_attention``, which picks flash attention for bf16 on a recent GPU):

* aggregator, 16 frames at 476x644 (what qwen-vl-utils makes of a 640x480 video) and at 672x896, keeping the
  one layer the connector reads and, as the original does, all 24;
* the space-aware pass: aggregator plus point head on 128 candidates at 392x518 (a 4:3 video after VGGT's
  preprocessing), the point head ``frames_chunk_size`` = 8 frames at a time;
* the connector (2048 -> 2048 -> Qwen2.5-VL-3B's 2048) on the 16-frame 476x644 tokens.

Each: seconds per call (every sample and the median of ``--reps`` after a warm-up), peak memory from
``torch.cuda.max_memory_allocated`` (reset before each case), the aggregator's analytic FLOPs and its fraction
of a measured dense matmul rate. Written as JSON (``--json``) that ``python -m bench.report`` renders.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from bench.results import emit
from model_plugin.connector import MLPAddConnector
from model_plugin.vggt import VGGT

LANGUAGE_DIM = 2048  # Qwen2.5-VL-3B's hidden size
FULL = {"embed_dim": 1024, "depth": 24, "num_heads": 16, "dino_layers": 24, "mlp_ratio": 4}


@dataclass(frozen=True)
class Case:
    frames: int
    height: int
    width: int


AGGREGATOR_CASES = [Case(16, 476, 644), Case(16, 672, 896)]
SPACE_AWARE_CASE = Case(128, 392, 518)
TINY_AGGREGATOR_CASES = [Case(4, 56, 84), Case(4, 84, 112)]
TINY_SPACE_AWARE_CASE = Case(8, 56, 70)


def transformer_flops(tokens: int, dim: int, mlp_ratio: int, attn_span: int) -> float:
    """Multiply-adds x2 of one pre-norm block: qkv + proj + MLP matmuls, plus QK^T and AV over ``attn_span``."""
    dense = 2 * tokens * dim * dim * (3 + 1 + 2 * mlp_ratio)
    attention = 2 * 2 * tokens * attn_span * dim
    return dense + attention


def aggregator_flops(case: Case, sizes: dict[str, int]) -> float:
    """Analytic FLOPs of the DINO patch embed plus the alternating frame/global blocks (heads not counted)."""
    dim, ratio = sizes["embed_dim"], sizes["mlp_ratio"]
    patches = (case.height // 14) * (case.width // 14)
    per_frame = patches + 5  # DINO: class + 4 registers; aggregator: camera + 4 registers
    dino = case.frames * sizes["dino_layers"] * transformer_flops(per_frame, dim, ratio, per_frame)
    frame = case.frames * transformer_flops(per_frame, dim, ratio, per_frame)
    global_ = transformer_flops(case.frames * per_frame, dim, ratio, case.frames * per_frame)
    return dino + sizes["depth"] * (frame + global_)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _samples(fn: Callable[[], object], device: torch.device, reps: int) -> list[float]:
    """Seconds of ``reps`` calls after one warm-up, each ended by a device synchronise."""
    fn()
    _sync(device)
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return times


def matmul_rate(device: torch.device, dtype: torch.dtype, size: int, reps: int) -> float:
    """Measured dense matmul FLOP/s at ``size`` x ``size``: the ceiling the encoder is compared with."""
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    return 2 * size**3 / statistics.median(_samples(lambda: a @ b, device, reps))


def _reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def _peak_gib(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else None


def _timed(name: str, case: Case, fn: Callable[[], object], device: torch.device, reps: int) -> dict[str, Any]:
    """One row: samples, median, peak memory; an out-of-memory error is recorded, not raised."""
    _reset_peak(device)
    row: dict[str, Any] = {"name": name, **asdict(case)}
    try:
        with torch.inference_mode():
            samples = _samples(fn, device, reps)
    except torch.OutOfMemoryError:
        return {**row, "oom": True, "peak_gib": _peak_gib(device)}
    print(f"{name} {case}: {statistics.median(samples):.3f} s", flush=True)
    return {**row, "samples_s": samples, "median_s": statistics.median(samples), "peak_gib": _peak_gib(device)}


def build_vggt(tiny: bool, device: torch.device, dtype: torch.dtype) -> tuple[VGGT, dict[str, int]]:
    """Aggregator plus point head, random weights: VGGT-1B, or the tiny checkpoint's sizes with ``tiny``."""
    if tiny:
        from model_plugin.tiny import SPATIAL

        aggregator = {k: SPATIAL[k] for k in ("depth", "num_heads", "patch_embed", "dino_depth", "dino_num_heads")}
        point_head = SPATIAL["point_head_kwargs"]
        sizes = {"embed_dim": SPATIAL["embed_dim"], "depth": SPATIAL["depth"], "num_heads": SPATIAL["num_heads"],
                 "dino_layers": SPATIAL["dino_depth"], "mlp_ratio": 4}  # fmt: skip
    else:
        aggregator, point_head, sizes = {}, None, FULL
    with torch.device(device):
        model = VGGT(
            embed_dim=sizes["embed_dim"],
            enable_camera=False,
            enable_depth=False,
            aggregator_kwargs=aggregator,
            point_head_kwargs=point_head,
        )
    return model.to(dtype).eval(), sizes


def measure(device_name: str, dtype_name: str, reps: int, tiny: bool) -> dict[str, Any]:
    device, dtype = torch.device(device_name), getattr(torch, dtype_name)
    torch.manual_seed(0)
    model, sizes = build_vggt(tiny, device, dtype)
    rate = matmul_rate(device, dtype, 256 if tiny else 8192, reps)
    rows = []
    for case in TINY_AGGREGATOR_CASES if tiny else AGGREGATOR_CASES:
        images = torch.rand(1, case.frames, 3, case.height, case.width, device=device, dtype=dtype)
        for name, layers in (("aggregator, 1 layer kept (connector)", [-1]), ("aggregator, all layers kept", None)):
            row = _timed(name, case, lambda i=images, k=layers: model.aggregator(i, layers=k), device, reps)
            rows.append({**row, "tflop": aggregator_flops(case, sizes) / 1e12})
    case = TINY_SPACE_AWARE_CASE if tiny else SPACE_AWARE_CASE
    candidates = torch.rand(1, case.frames, 3, case.height, case.width, device=device, dtype=dtype)
    run = lambda c=candidates: model.predict_world_points(c, frames_chunk_size=8)  # noqa: E731
    space_aware = _timed("space-aware: aggregator + point head (chunks of 8)", case, run, device, reps)
    rows.append({**space_aware, "tflop": aggregator_flops(case, sizes) / 1e12})
    del candidates, run

    language_dim = 64 if tiny else LANGUAGE_DIM
    connector = MLPAddConnector(sizes["embed_dim"], language_dim).to(device, dtype).eval()
    case = (TINY_AGGREGATOR_CASES if tiny else AGGREGATOR_CASES)[0]
    grid_h, grid_w = case.height // 14, case.width // 14
    tokens = torch.randn(case.frames, 5 + grid_h * grid_w, 2 * sizes["embed_dim"], device=device, dtype=dtype)
    grid = torch.tensor([[case.frames // 2, grid_h, grid_w]])
    video = torch.randn(case.frames // 2 * grid_h * grid_w // 4, language_dim, device=device, dtype=dtype)
    rows.append(_timed("connector", case, lambda: connector(video, [tokens], 5, grid), device, reps))
    meta = {
        "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "dtype": dtype_name,
        "tiny": tiny,
        "sizes": sizes,
        "reps": reps,
        "matmul_tflops": rate / 1e12,
        "flash_sdp_enabled": bool(device.type == "cuda" and torch.backends.cuda.flash_sdp_enabled()),
        "torch_threads": torch.get_num_threads(),
    }
    return {"meta": meta, "rows": rows}


def to_markdown(result: dict[str, Any]) -> str:
    meta = result["meta"]
    scale = "TINY sizes (a check of the script, not a measurement)" if meta["tiny"] else "VGGT-1B sizes"
    lines = [
        f"{meta['device']}, torch {meta['torch']}, {meta['dtype']}, {scale}, "
        f"random weights; median of {meta['reps']} after a warm-up; dense matmul {meta['matmul_tflops']:.1f} TFLOP/s; "
        f"flash SDPA enabled: {meta['flash_sdp_enabled']}. TFLOP: the aggregator's analytic count (heads excluded).",
        "",
        "| what | frames | size | seconds | peak GiB | TFLOP | % of matmul rate |",
        "| --- | ---: | --- | ---: | ---: | ---: | ---: |",
    ]  # fmt: skip
    for row in result["rows"]:
        size = f"{row['height']}x{row['width']}"
        if row.get("oom"):
            lines.append(f"| {row['name']} | {row['frames']} | {size} | OOM | | | |")
            continue
        peak = "n/a (CPU)" if row["peak_gib"] is None else f"{row['peak_gib']:.2f}"
        tflop = row.get("tflop")
        share = f"{100 * tflop / row['median_s'] / meta['matmul_tflops']:.0f}%" if tflop else ""
        lines.append(
            f"| {row['name']} | {row['frames']} | {size} | {row['median_s']:.4f} | {peak} "
            f"| {f'{tflop:.2f}' if tflop else ''} | {share} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.gpu_spatial_encoder", description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16", "float32"])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--tiny", action="store_true", help="reduced sizes, to check the script on a CPU")
    parser.add_argument("--json", type=Path, help="write the result here (bench.report renders it)")
    args = parser.parse_args(argv)
    result = measure(args.device, args.dtype, args.reps, args.tiny)
    emit(result, to_markdown, args.json)


if __name__ == "__main__":
    main()

"""Time the spatial encoder at real size: the VGGT aggregator (VGGT-1B) and the connector, random weights.

``python -m bench.gpu_spatial_encoder [--device cuda] [--dtype bfloat16] [--out FILE]``
``python -m bench.gpu_spatial_encoder --device cpu --tiny``  (checks the script itself on a CPU)

For each case it reports seconds per call (median of ``--reps`` after a warm-up), peak device memory, the
analytic FLOP count and the fraction of the measured dense bf16 matmul rate it reaches, keeping one layer
(what the connector needs) and, where it fits, all 24 (the original's behaviour).
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import dataclass

import torch

from model_plugin.connector import MLPAddConnector
from model_plugin.vggt import Aggregator

FULL = {"embed_dim": 1024, "depth": 24, "num_heads": 16, "dino_layers": 24, "mlp_ratio": 4}
TINY = {"embed_dim": 64, "depth": 2, "num_heads": 2, "dino_layers": 1, "mlp_ratio": 4}


@dataclass(frozen=True)
class Case:
    frames: int
    height: int
    width: int


CASES = [Case(8, 476, 644), Case(16, 476, 644), Case(32, 476, 644), Case(8, 672, 896), Case(16, 672, 896),
         Case(128, 294, 518)]  # fmt: skip
TINY_CASES = [Case(4, 56, 84), Case(8, 56, 84)]


def transformer_flops(tokens: int, dim: int, mlp_ratio: int, attn_span: int) -> float:
    """Multiply-adds x2 of one pre-norm block: qkv + proj + MLP matmuls, plus QK^T and AV over ``attn_span``."""
    dense = 2 * tokens * dim * dim * (3 + 1 + 2 * mlp_ratio)
    attention = 2 * 2 * tokens * attn_span * dim
    return dense + attention


def aggregator_flops(case: Case, sizes: dict) -> float:
    """Analytic FLOPs of the DINO patch embed plus the alternating frame/global blocks."""
    dim, ratio = sizes["embed_dim"], sizes["mlp_ratio"]
    patches = (case.height // 14) * (case.width // 14)
    per_frame = patches + 5
    dino = case.frames * sizes["dino_layers"] * transformer_flops(patches + 5, dim, ratio, patches + 5)
    frame = case.frames * transformer_flops(per_frame, dim, ratio, per_frame)
    global_ = transformer_flops(case.frames * per_frame, dim, ratio, case.frames * per_frame)
    return dino + sizes["depth"] * (frame + global_)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _time(fn, device: torch.device, reps: int) -> float:
    fn()
    _sync(device)
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def matmul_rate(device: torch.device, dtype: torch.dtype, size: int, reps: int) -> float:
    """Measured dense matmul FLOP/s at ``size`` x ``size``: the ceiling the encoder is compared with."""
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    return 2 * size**3 / _time(lambda: a @ b, device, reps)


def _peak_gib(device: torch.device) -> float:
    return torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.gpu_spatial_encoder")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16", "float32"])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--tiny", action="store_true", help="reduced sizes, to check the script on a CPU")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    sizes, cases = (TINY, TINY_CASES) if args.tiny else (FULL, CASES)

    with torch.device(device):
        aggregator = Aggregator(
            embed_dim=sizes["embed_dim"],
            depth=sizes["depth"],
            num_heads=sizes["num_heads"],
            patch_embed="dinov2_vitl14_reg",
            dino_depth=sizes["dino_layers"],
            dino_num_heads=sizes["num_heads"],
        )
    aggregator = aggregator.to(dtype).eval()
    rate = matmul_rate(device, dtype, 256 if args.tiny else 8192, args.reps)
    lines = [
        f"device: {torch.cuda.get_device_name() if device.type == 'cuda' else 'cpu'}, torch {torch.__version__}, "
        f"{args.dtype}, dense matmul {rate / 1e12:.1f} TFLOP/s",
        "",
        "| frames | size | layers kept | seconds | peak GiB | TFLOP | % of matmul rate |",
        "| ---: | --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for case in cases:
        images = torch.rand(1, case.frames, 3, case.height, case.width, device=device, dtype=dtype)
        flops = aggregator_flops(case, sizes)
        for label, layers in (("1 (connector)", [-1]), ("all", None)):
            if device.type == "cuda":
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats()
            try:
                with torch.inference_mode():
                    run = lambda images=images, layers=layers: aggregator(images, layers=layers)  # noqa: E731
                    seconds = _time(run, device, args.reps)
            except torch.OutOfMemoryError:
                lines.append(f"| {case.frames} | {case.height}x{case.width} | {label} | OOM | | | |")
                continue
            lines.append(
                f"| {case.frames} | {case.height}x{case.width} | {label} | {seconds:.3f} | {_peak_gib(device):.2f} "
                f"| {flops / 1e12:.2f} | {100 * flops / seconds / rate:.0f}% |"
            )

    connector = MLPAddConnector(sizes["embed_dim"], 2048 if not args.tiny else 64).to(device, dtype).eval()
    case = cases[1]
    grid_h, grid_w = case.height // 14, case.width // 14
    tokens = torch.randn(case.frames, 5 + grid_h * grid_w, 2 * sizes["embed_dim"], device=device, dtype=dtype)
    grid = torch.tensor([[case.frames // 2, grid_h, grid_w]])
    video = torch.randn(
        case.frames // 2 * grid_h * grid_w // 4, connector.mlp[2].out_features, device=device, dtype=dtype
    )
    with torch.inference_mode():
        seconds = _time(lambda: connector(video, [tokens], 5, grid), device, args.reps)
    shape = f"{connector.mlp[0].in_features} -> {connector.mlp[0].out_features} -> {connector.mlp[2].out_features}"
    lines += ["", f"connector ({shape}), {case.frames} frames {case.height}x{case.width}: {seconds * 1e3:.2f} ms"]
    report = "\n".join(lines)
    print(report)
    if args.out:
        with open(args.out, "w") as handle:
            handle.write(report + "\n")


if __name__ == "__main__":
    main()

"""The spatial encoder at its real size on a GPU, and what it means for a VSI-Bench run on that GPU.

``bench/gpu/run.sh`` (one command, PyTorch only: no vLLM, no network, random weights, < 8 minutes on one H100)
runs ``python -m bench.gpu_spatial_encoder --device cuda --dtype bfloat16 --json docs/bench/gpu_spatial_encoder.json``;
``python -m bench.gpu_spatial_encoder --device cpu --tiny`` checks the script itself on a CPU (CI does).

Cases, most useful first, the JSON rewritten after each (a time-out loses only the case it interrupted):

* the device's dense matmul rate and copy bandwidth (the projection's ceilings);
* the aggregator as served (weights and frames in the model dtype), 16 frames at 476x644 (what qwen-vl-utils
  makes of a 640x480 video), keeping the one layer the connector reads;
* space-aware selection on the same synthetic 128-candidate scene (392x518 point maps,
  ``bench.bench_select_frames.make_scene``): the original's (``sa_sampling.py``: per-frame ``torch.unique(dim=0)``
  on the device, Python sets, greedy cover) beside ours (``sampling.voxel_cover``, on the CPU after the copy back);
* the space-aware pass as the geometry worker runs it: float32 weights, frames in the pass dtype, aggregator under
  autocast and point head in float32 (``model_plugin.dtype_rules``), 128 candidates at 392x518, chunks of 8;
* the aggregator at 672x896 and with all 24 layers kept (as the original), and the connector.

Each: seconds per call (every sample and the median of ``--reps`` after a warm-up), peak memory from
``torch.cuda.max_memory_allocated`` (reset before each case), the aggregator's analytic FLOPs and its fraction of
the matmul rate. From these it prints a **projection** (not a measurement) of a VSI-Bench run on this GPU,
uniform and space-aware, with its assumptions (``project``).
"""

from __future__ import annotations

import argparse
import copy
import functools
import json
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


def build_vggt(tiny: bool, device: torch.device) -> tuple[VGGT, dict[str, int]]:
    """Aggregator plus point head, random float32 weights: VGGT-1B, or the tiny checkpoint's sizes with ``tiny``."""
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
    return model.eval(), sizes


def copy_bandwidth(device: torch.device, reps: int, mib: int) -> float:
    """Measured bytes/s of a device-to-device copy (read + write): what a decode step's weight reads run at."""
    src = torch.empty(mib * 2**20, dtype=torch.uint8, device=device)
    dst = torch.empty_like(src)
    return 2 * src.numel() / statistics.median(_samples(lambda: dst.copy_(src), device, reps))


class Recorder:
    """The result so far, written to ``json_path`` after every case."""

    def __init__(self, meta: dict[str, Any], json_path: Path | None) -> None:
        self.result: dict[str, Any] = {"meta": meta, "rows": [], "projection": None}
        self.json_path = json_path

    def add(self, row: dict[str, Any]) -> None:
        self.result["rows"].append(row)
        self.save()

    def save(self) -> None:
        self.result["projection"] = project(self.result)
        if self.json_path:
            tmp = self.json_path.with_suffix(".tmp")
            tmp.write_text(json.dumps(self.result, indent=1))
            tmp.replace(self.json_path)


def selection_rows(device: torch.device, case: Case, reps: int, k: int = 16) -> list[dict[str, Any]]:
    """The original's selection on the device beside ours on one synthetic scene; both must choose the same."""
    from bench.bench_select_frames import make_scene, original_select
    from sampling.voxel_cover import select_frames

    points, conf = make_scene(case.frames, case.height, case.width, seed=0)
    points_dev, conf_dev = torch.from_numpy(points).to(device), torch.from_numpy(conf).to(device)
    ours = select_frames(points_dev.cpu(), conf_dev.cpu(), k)
    original = original_select(points_dev, conf_dev, k, device=str(device))
    contenders = {
        f"selection: original (per-frame torch.unique on {device.type})": lambda: original_select(
            points_dev, conf_dev, k, device=str(device)
        ),
        "selection: ours (sampling.voxel_cover, CPU, after the copy back)": lambda: select_frames(
            points_dev.cpu(), conf_dev.cpu(), k
        ),
    }
    rows = []
    for name, fn in contenders.items():
        rows.append({**_timed(name, case, fn, device, reps), "k": k, "same_selection": ours == original})
    return rows


def measure(device_name: str, dtype_name: str, reps: int, tiny: bool, json_path: Path | None = None) -> dict[str, Any]:
    device, dtype = torch.device(device_name), getattr(torch, dtype_name)
    torch.manual_seed(0)
    meta = {
        "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "dtype": dtype_name,
        "tiny": tiny,
        "reps": reps,
        "flash_sdp_enabled": bool(device.type == "cuda" and torch.backends.cuda.flash_sdp_enabled()),
        "torch_threads": torch.get_num_threads(),
    }
    meta["matmul_tflops"] = matmul_rate(device, dtype, 256 if tiny else 8192, reps) / 1e12
    meta["copy_gb_s"] = copy_bandwidth(device, reps, 16 if tiny else 2048) / 1e9
    recorder = Recorder(meta, json_path)
    geometry, sizes = build_vggt(tiny, device)  # float32 weights: the space-aware pass's rule
    meta["sizes"] = sizes
    served = copy.deepcopy(geometry).to(dtype)  # the served aggregator: weights in the model dtype
    cases = TINY_AGGREGATOR_CASES if tiny else AGGREGATOR_CASES

    def aggregator_row(case: Case, layers: list[int] | None) -> dict[str, Any]:
        name = "aggregator, 1 layer kept (connector)" if layers else "aggregator, all layers kept"
        images = torch.rand(1, case.frames, 3, case.height, case.width, device=device, dtype=dtype)
        row = _timed(name, case, lambda: served.aggregator(images, layers=layers), device, reps)
        return {**row, "tflop": aggregator_flops(case, sizes) / 1e12}

    recorder.add(aggregator_row(cases[0], [-1]))
    for row in selection_rows(device, TINY_SPACE_AWARE_CASE if tiny else SPACE_AWARE_CASE, reps):
        recorder.add(row)

    case = TINY_SPACE_AWARE_CASE if tiny else SPACE_AWARE_CASE
    candidates = torch.rand(1, case.frames, 3, case.height, case.width, device=device).to(dtype)
    run = functools.partial(geometry.predict_world_points, candidates, 8, autocast_dtype=dtype)
    space_aware = _timed("space-aware: aggregator + point head (chunks of 8)", case, run, device, min(reps, 3))
    recorder.add({**space_aware, "tflop": aggregator_flops(case, sizes) / 1e12})
    del candidates, run, geometry

    recorder.add(aggregator_row(cases[0], None))
    for case in cases[1:]:
        recorder.add(aggregator_row(case, [-1]))
        recorder.add(aggregator_row(case, None))

    language_dim = 64 if tiny else LANGUAGE_DIM
    connector = MLPAddConnector(sizes["embed_dim"], language_dim).to(device, dtype).eval()
    case = cases[0]
    grid_h, grid_w = case.height // 14, case.width // 14
    tokens = torch.randn(case.frames, 5 + grid_h * grid_w, 2 * sizes["embed_dim"], device=device, dtype=dtype)
    grid = torch.tensor([[case.frames // 2, grid_h, grid_w]])
    video = torch.randn(case.frames // 2 * grid_h * grid_w // 4, language_dim, device=device, dtype=dtype)
    recorder.add(_timed("connector", case, lambda: connector(video, [tokens], 5, grid), device, reps))
    return recorder.result


# VSI-Bench as the original evaluates it: 5,130 questions over 288 videos, 16 frames at 476x644 (640x480 videos).
VSI_BENCH = {"questions": 5130, "videos": 288, "frames": 16, "height": 476, "width": 644}
# Qwen2.5-VL-3B (published config.json): ViT 32 blocks of 1280 (SwiGLU 3420; 4 full-attention blocks, the rest in
# 112-pixel windows), merger 5120 -> 2048; LLM 36 layers of 2048 (2 KV heads of 128, SwiGLU 11008), 151936 tokens.
VIT = {"depth": 32, "dim": 1280, "mlp": 3420, "full_blocks": 4, "window_tokens": 64}
LLM = {"layers": 36, "dim": 2048, "kv_dim": 256, "mlp": 11008, "vocab": 151936}
PROMPT_TEXT_TOKENS = 80  # system prompt, question and options around the video
ANSWER_TOKENS = 8  # an option letter or a number, and the end token
ROW_SERVED = "aggregator, 1 layer kept (connector)"
ROW_PASS = "space-aware: aggregator + point head (chunks of 8)"
ROW_OURS = "selection: ours (sampling.voxel_cover, CPU, after the copy back)"


def vit_flops(frames: int, height: int, width: int) -> float:
    """Qwen2.5-VL-3B ViT + merger FLOPs for one video."""
    per_frame_pair = (height // 14) * (width // 14)  # a ViT patch spans 2 frames (temporal patch 2)
    patches = frames // 2 * per_frame_pair
    dim, mlp = VIT["dim"], VIT["mlp"]
    dense = VIT["depth"] * 2 * patches * (4 * dim * dim + 3 * dim * mlp)
    windowed = (VIT["depth"] - VIT["full_blocks"]) * 4 * patches * VIT["window_tokens"] * dim
    full = VIT["full_blocks"] * 4 * patches * per_frame_pair * dim
    merger = 2 * (patches // 4) * (4 * dim * 4 * dim + 4 * dim * LLM["dim"])
    return dense + windowed + full + merger


def llm_layer_params() -> int:
    dim = LLM["dim"]
    return LLM["layers"] * (2 * dim * dim + 2 * dim * LLM["kv_dim"] + 3 * dim * LLM["mlp"])


def llm_prefill_flops(new_tokens: int, context: int) -> float:
    """Dense matmuls of ``new_tokens`` plus their causal attention over ``context`` tokens, and one lm_head row."""
    attention = 4 * LLM["layers"] * new_tokens * context * LLM["dim"] / (2 if new_tokens == context else 1)
    return 2 * new_tokens * llm_layer_params() + attention + 2 * LLM["vocab"] * LLM["dim"]


def _median(result: dict[str, Any], name: str, frames: int | None = None) -> float | None:
    for row in result["rows"]:
        if row["name"] == name and "median_s" in row and (frames is None or row["frames"] == frames):
            return row["median_s"]
    return None


def project(result: dict[str, Any]) -> dict[str, Any] | None:
    """Projected wall time of VSI-Bench on this device from what was measured; None until the inputs exist."""
    meta, rows = result["meta"], result["rows"]
    served = next((r for r in rows if r["name"] == ROW_SERVED and "median_s" in r), None)
    if served is None:
        return None
    rate = meta["matmul_tflops"] * 1e12
    efficiency = min(1.0, served["tflop"] * 1e12 / served["median_s"] / rate)
    video_tokens = VSI_BENCH["frames"] // 2 * (VSI_BENCH["height"] // 28) * (VSI_BENCH["width"] // 28)
    context = video_tokens + PROMPT_TEXT_TOKENS
    scale = aggregator_flops(Case(VSI_BENCH["frames"], VSI_BENCH["height"], VSI_BENCH["width"]), meta["sizes"]) / (
        served["tflop"] * 1e12
    )  # 1.0 at full size; the tiny check measures a smaller case
    per_video = {
        "vggt_s": served["median_s"] * scale,
        "vit_s": vit_flops(VSI_BENCH["frames"], VSI_BENCH["height"], VSI_BENCH["width"]) / (rate * efficiency),
        "llm_video_prefill_s": llm_prefill_flops(context, context) / (rate * efficiency),
    }
    weight_bytes = 2 * (llm_layer_params() + LLM["vocab"] * LLM["dim"])
    kv_bytes = 2 * LLM["layers"] * 2 * LLM["kv_dim"] * context
    decode_step = 2 * (weight_bytes + kv_bytes) / (meta["copy_gb_s"] * 1e9)  # read once; copy_gb_s counts r + w
    per_question = {
        "question_prefill_s": llm_prefill_flops(PROMPT_TEXT_TOKENS, context) / (rate * efficiency),
        "decode_s": ANSWER_TOKENS * decode_step,
    }
    videos, questions = VSI_BENCH["videos"], VSI_BENCH["questions"]
    uniform = videos * sum(per_video.values()) + questions * sum(per_question.values())
    projection: dict[str, Any] = {
        "label": "PROJECTION from this run's measurements, not a measured VSI-Bench run",
        "workload": VSI_BENCH,
        "per_video": per_video,
        "per_question": per_question,
        "uniform_s": uniform,
        "space_aware_s": None,
        "assumptions": [
            "one request at a time (no batching, no overlap of decoding, encoders and the space-aware pass): "
            "an upper bound for the server, which batches",
            "each video's questions follow each other, so its encoders run once and its prefix is cached "
            "(encoder cache and prefix cache keyed by content)",
            f"ViT and LLM prefill run at the measured aggregator's share of the matmul rate ({efficiency:.0%})",
            f"{ANSWER_TOKENS} generated tokens per answer; a decode step reads the LLM weights and KV cache once at "
            "the measured copy bandwidth",
            "video decoding, HTTP and tokenisation on the CPU are not counted",
        ],
    }
    pass_s, ours_s = _median(result, ROW_PASS), _median(result, ROW_OURS)
    if pass_s is not None and ours_s is not None:
        extra = pass_s + ours_s
        projection["per_video"] = {**per_video, "space_aware_pass_s": pass_s, "selection_s": ours_s}
        projection["space_aware_s"] = uniform + videos * extra
        projection["assumptions"].append(
            "space-aware: one pass over 128 candidates per video plus our selection (measured); decoding the 128 "
            "candidate frames on the CPU is not counted"
        )
    return projection


def projection_markdown(projection: dict[str, Any] | None, tiny: bool) -> str:
    if projection is None:
        return "No projection: the served aggregator case did not finish.\n"
    w = projection["workload"]
    what = "TINY sizes, a check of the arithmetic only" if tiny else "this device"
    lines = [
        f"**{projection['label']}** ({what}): VSI-Bench, {w['questions']:,} questions over {w['videos']} videos, "
        f"{w['frames']} frames at {w['height']}x{w['width']}.",
        "",
        f"- uniform: {projection['uniform_s'] / 60:.1f} min",
    ]
    if projection["space_aware_s"] is not None:
        lines.append(f"- space-aware: {projection['space_aware_s'] / 60:.1f} min")
    per_video = ", ".join(f"{k} {v:.3f}" for k, v in projection["per_video"].items())
    per_question = ", ".join(f"{k} {v:.4f}" for k, v in projection["per_question"].items())
    lines += [f"- per video: {per_video}", f"- per question: {per_question}", "", "Assumptions:"]
    lines += [f"- {a}" for a in projection["assumptions"]]
    return "\n".join(lines) + "\n"


def to_markdown(result: dict[str, Any]) -> str:
    meta = result["meta"]
    scale = "TINY sizes (a check of the script, not a measurement)" if meta["tiny"] else "VGGT-1B sizes"
    lines = [
        f"{meta['device']}, torch {meta['torch']}, {meta['dtype']}, {scale}, "
        f"random weights; median of {meta['reps']} after a warm-up; dense matmul {meta['matmul_tflops']:.1f} TFLOP/s, "
        f"copy {meta.get('copy_gb_s', float('nan')):.0f} GB/s; "
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
    same = [row["same_selection"] for row in result["rows"] if "same_selection" in row]
    if same:
        lines += ["", f"Original and ours chose the same frames: {all(same)}."]
    projection = result.get("projection")
    return "\n".join(lines) + "\n\n" + projection_markdown(projection, meta["tiny"])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.gpu_spatial_encoder", description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16", "float32"])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--tiny", action="store_true", help="reduced sizes, to check the script on a CPU")
    parser.add_argument("--json", type=Path, help="write the result here (bench.report renders it)")
    args = parser.parse_args(argv)
    result = measure(args.device, args.dtype, args.reps, args.tiny, args.json)
    emit(result, to_markdown, args.json)


if __name__ == "__main__":
    main()

"""vLLM data parallel behind our API server: ``--data-parallel-size 2`` vs 1 on CPU, side by side in one run.

``python -m bench.bench_data_parallel [--rounds 3] [--burst 8] [--tokens 32] [--json PATH]``

Two servers on the same tiny checkpoint with the same caps, one with one engine and one with two, both up for
the whole run; rounds alternate which goes first. Each round sends ``--burst`` concurrent questions (different
questions, one video uploaded beforehand, so frames come from the cache and the engines do the work) and takes:
the burst's wall time, the CPU seconds the server's whole process tree spent on it (API, engines, coordinator),
and per engine how many of the burst's requests it answered (vLLM's ``engine``-labelled counter).

What it measures: that our layer drives every engine (requests spread over both) and what a second engine costs
and gives on this machine. What it does not: a GPU node's gain. On 2 CPU cores the two engines compete for the
same cores (each also runs its own torch threads), so wall time here says little about throughput with one GPU
per engine; the per-engine counts and the CPU seconds are the portable part.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import re
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import psutil

from bench.media import synthetic_mp4
from bench.servers import ours, running_process

HEIGHT, WIDTH, FRAMES = 112, 140, 8
SIDES = {"dp1": 1, "dp2": 2}


def _tree_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process and its live descendants."""
    total = 0.0
    root = psutil.Process(pid)
    for process in [root, *root.children(recursive=True)]:
        try:
            times = process.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


def per_engine(metrics: str, name: str) -> dict[str, float]:
    """A vLLM counter of a ``/metrics`` page summed per ``engine`` label (data parallel labels each engine's)."""
    totals: dict[str, float] = {}
    for match in re.finditer(rf"^{re.escape(name)}\{{([^}}]*)\}} ([0-9.e+-]+)$", metrics, re.M):
        engine = re.search(r'engine="(\d+)"', match.group(1))
        if engine:
            totals[engine.group(1)] = totals.get(engine.group(1), 0.0) + float(match.group(2))
    return totals


def _served_per_engine(base: str) -> dict[str, float]:
    """vLLM's ``vllm:request_success_total`` summed per ``engine`` label."""
    return per_engine(httpx.get(f"{base}/metrics", timeout=30).text, "vllm:request_success_total")


def _ask(base: str, file_id: str, question: str, tokens: int) -> None:
    body = {
        "model": "m",
        "messages": [
            {
                "role": "user",
                "content": [{"type": "file", "file": {"file_id": file_id}}, {"type": "text", "text": question}],
            }
        ],
        "max_tokens": tokens,
        "min_tokens": tokens,
        "temperature": 0,
    }
    reply = httpx.post(f"{base}/v1/chat/completions", json=body, timeout=900)
    reply.raise_for_status()


def _burst(base: str, pid: int, file_id: str, size: int, tokens: int, round_: int) -> dict[str, Any]:
    questions = [f"Round {round_}, question {i}: how many chairs?" for i in range(size)]
    served_before, cpu_before = _served_per_engine(base), _tree_cpu_s(pid)
    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(size) as pool:
        list(pool.map(lambda q: _ask(base, file_id, q, tokens), questions))
    wall = time.perf_counter() - started
    cpu = _tree_cpu_s(pid) - cpu_before
    served = {e: n - served_before.get(e, 0.0) for e, n in _served_per_engine(base).items()}
    return {"wall_s": wall, "cpu_s": cpu, "served_per_engine": served}


def measure(rounds: int = 3, burst: int = 8, tokens: int = 32) -> dict[str, Any]:
    """Both servers up; per round one burst on each (alternating order); raw samples."""
    from model_plugin.tiny import write_tiny_checkpoint

    work = Path(tempfile.mkdtemp(prefix="bench-dp-"))
    checkpoint = write_tiny_checkpoint(work / "tiny", seed=0)
    video = synthetic_mp4(work / "room.mp4", FRAMES, HEIGHT, WIDTH, seed=7)
    caps = ["--min-pixels-per-frame", "3136", "--max-pixels-per-frame", str(HEIGHT * WIDTH), "--served-model-name"]
    caps += ["m", "--default-num-frames", str(FRAMES), "--max-num-frames", "16", "--space-aware-candidates", "16"]
    samples: dict[str, list[dict[str, Any]]] = {name: [] for name in SIDES}
    with (
        running_process(
            ours(checkpoint, *caps, "--uploads-dir", str(work / "up1"), "--data-parallel-size", "1"), work / "dp1.log"
        ) as (base1, process1),
        running_process(
            ours(checkpoint, *caps, "--uploads-dir", str(work / "up2"), "--data-parallel-size", "2"), work / "dp2.log"
        ) as (base2, process2),
    ):
        sides = {"dp1": (base1, process1.pid), "dp2": (base2, process2.pid)}
        files = {}
        for name, (base, _) in sides.items():
            upload = httpx.post(f"{base}/v1/files", files={"file": ("room.mp4", video, "video/mp4")}, timeout=120)
            upload.raise_for_status()
            files[name] = upload.json()["id"]
            _ask(base, files[name], "Warm-up: how many chairs?", tokens)  # first request pays one-time costs
            _burst(base, sides[name][1], files[name], burst, tokens, -1)  # and the first burst wakes every engine
        for round_ in range(rounds):
            order = list(sides.items())[:: 1 if round_ % 2 == 0 else -1]
            for name, (base, pid) in order:
                samples[name].append(_burst(base, pid, files[name], burst, tokens, round_))
    medians = {
        name: {
            "wall_s": statistics.median(s["wall_s"] for s in runs),
            "cpu_s": statistics.median(s["cpu_s"] for s in runs),
        }
        for name, runs in samples.items()
    }
    return {
        "meta": {"rounds": rounds, "burst": burst, "tokens": tokens, "frames": FRAMES, "height": HEIGHT,
                 "width": WIDTH, "cores": psutil.cpu_count(), "loadavg_1m_at_end": psutil.getloadavg()[0]},
        "samples": samples,
        "median": medians,
    }  # fmt: skip


def _spread(runs: list[dict[str, Any]]) -> str:
    """Requests per engine over all rounds, e.g. ``12 / 12``."""
    totals: dict[str, float] = {}
    for run in runs:
        for engine, n in run["served_per_engine"].items():
            totals[engine] = totals.get(engine, 0.0) + n
    return " / ".join(f"{totals[e]:.0f}" for e in sorted(totals, key=int))


def to_markdown(result: dict[str, Any]) -> str:
    meta, med = result["meta"], result["median"]
    setup = (
        f"{meta['rounds']} rounds of {meta['burst']} concurrent questions, {meta['tokens']} tokens each, one "
        f"{meta['frames']}-frame {meta['height']}x{meta['width']} upload; {meta['cores']} cores"
    )
    base_wall, base_cpu = med["dp1"]["wall_s"], med["dp1"]["cpu_s"]
    lines = [
        f"| engines ({setup}) | burst wall time (median) | ratio | CPU s per burst (median) | ratio | "
        "requests per engine (all rounds) |",
        "| --- | ---: | ---: | ---: | ---: | --- |",
    ]
    for name, label in (("dp1", "`--data-parallel-size 1`"), ("dp2", "`--data-parallel-size 2`")):
        lines.append(
            f"| {label} | {med[name]['wall_s']:.2f} s | {med[name]['wall_s'] / base_wall:.2f}x | "
            f"{med[name]['cpu_s']:.1f} | {med[name]['cpu_s'] / base_cpu:.2f}x | {_spread(result['samples'][name])} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_data_parallel")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--burst", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--json", type=Path, help="also write the result here")
    args = parser.parse_args(argv)
    result = measure(args.rounds, args.burst, args.tokens)
    print(to_markdown(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()

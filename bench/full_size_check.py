"""The real model's sizes served in bfloat16 on a CPU: one JSON line per architecture (``make full-size-check``).

For each architecture it builds (or reuses) the full-size random-weight checkpoint in the cache
(``~/.cache/spatial-mllm-serve/full-v1.1``, ``full-v1.0``; ``python -m model_plugin.tiny --size full``), starts
``python -m server --model FULL --dtype bfloat16`` with small caps, asks one uniform and one space-aware
question over HTTP, stops the server and prints::

    {"arch", "dtype", "params": {"total", "llm", "vit", "vggt", "connector"}, "start_s", "peak_rss_bytes",
     "uniform": {"latency_s", "video_frames"}, "space_aware": {"latency_s", "video_frames"}}

``params`` is what the engine loaded (the model logs its own counts after loading weights; ``vggt`` is the
aggregator, the only part of VGGT serving loads), ``video_frames`` comes from the answers, ``peak_rss_bytes`` is
the largest sum of resident memory over the server's whole process tree (API, engine, geometry worker, decoders;
pages shared between processes count once per process), sampled every 0.2 s. Heavy (about 20 GB of memory; 10 min
on 2 cores once the checkpoints are cached, docs/DEPLOY.md): not part of the default test run.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import psutil

from bench.media import synthetic_mp4
from bench.servers import _free_port
from model_plugin.vllm_base import PARAMETERS_LOG_PREFIX

ARCHS = ("v1.1", "v1.0")
DEFAULT_CACHE = Path.home() / ".cache" / "spatial-mllm-serve"
PART_NAMES = ("total", "llm", "vit", "vggt", "connector")


def checkpoint_dir(cache: Path, arch: str, size: str = "full") -> Path:
    return cache / f"{size}-{arch}"


def ensure_checkpoint(cache: Path, arch: str, size: str = "full") -> tuple[Path, dict[str, Any] | None]:
    """The cached checkpoint of ``arch``, built first when missing (into a ``.partial`` folder, then renamed, so
    an interrupted build is never reused); the build's wall time, CPU time and peak RSS when it was built."""
    target = checkpoint_dir(cache, arch, size)
    if (target / "config.json").exists():
        return target, None
    partial = target.with_name(target.name + ".partial")
    command = [sys.executable, "-m", "model_plugin.tiny", str(partial), "--arch", arch, "--size", size]
    tick = time.monotonic()
    process = subprocess.Popen(command)
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode:
        raise RuntimeError(f"{' '.join(command)} exited with {process.returncode}")
    partial.replace(target)
    size_bytes = sum(f.stat().st_size for f in target.iterdir())
    return target, {
        "wall_s": round(time.monotonic() - tick, 1),
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 1),
        "peak_rss_bytes": usage.ru_maxrss * 1024,
        "bytes": size_bytes,
    }


class TreeMemory:
    """Peak of the summed RSS of a process and all its descendants, sampled on a thread."""

    def __init__(self, pid: int, interval_s: float = 0.2) -> None:
        self.root = psutil.Process(pid)
        self.interval_s = interval_s
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def sample(self) -> int:
        total = 0
        with contextlib.suppress(psutil.Error):
            for process in [self.root, *self.root.children(recursive=True)]:
                with contextlib.suppress(psutil.Error):
                    total += process.memory_info().rss
        self.peak = max(self.peak, total)
        return total

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.sample()

    def __enter__(self) -> TreeMemory:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


def served_parameters(log_text: str) -> dict[str, int]:
    """The counts the model logged after loading its weights (the last such line)."""
    lines = [line for line in log_text.splitlines() if PARAMETERS_LOG_PREFIX in line]
    if not lines:
        raise RuntimeError("the server's log has no parameter line: did the model load?")
    counts = json.loads(lines[-1].split(PARAMETERS_LOG_PREFIX, 1)[1])
    return {name: int(counts[name]) for name in PART_NAMES}


def server_command(checkpoint: Path, dtype: str, options: argparse.Namespace, port: int) -> list[str]:
    pixels = options.height * options.width
    return [
        sys.executable, "-m", "server", "--model", str(checkpoint), "--dtype", dtype,
        "--host", "127.0.0.1", "--port", str(port),
        "--max-model-len", str(options.max_model_len), "--max-num-seqs", "1", "--enforce-eager",
        "--max-num-frames", str(max(options.frames, options.space_aware_frames)),
        "--default-num-frames", str(options.frames),
        "--max-pixels-per-frame", str(pixels), "--min-pixels-per-frame", str(min(pixels, 3136)),
        "--space-aware-candidates", str(options.candidates), "--media-workers", "1",
    ]  # fmt: skip


@contextlib.contextmanager
def serving(command: list[str], log: Path, timeout_s: float) -> Iterator[tuple[str, float, TreeMemory]]:
    """Start the server; yields (base URL, seconds until /health answered 200, its memory sampler)."""
    port = command[command.index("--port") + 1]
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": os.environ.get("VLLM_CPU_KVCACHE_SPACE", "1")}
    base = f"http://127.0.0.1:{port}"
    tick = time.monotonic()
    with log.open("w") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
    memory = TreeMemory(process.pid)
    try:
        with memory:
            while True:
                if process.poll() is not None:
                    raise RuntimeError(f"the server exited with {process.returncode}:\n{log.read_text()[-4000:]}")
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                        break
                if time.monotonic() - tick > timeout_s:
                    raise TimeoutError(f"the server did not answer /health within {timeout_s} s (log: {log})")
                time.sleep(0.5)
            yield base, time.monotonic() - tick, memory
    finally:
        process.terminate()
        try:
            process.wait(timeout=120)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def ask(base: str, video: bytes, strategy: str, frames: int, options: argparse.Namespace) -> dict[str, Any]:
    """One question about ``video`` through /v1/chat/completions; its latency and the frames it was answered on."""
    url = "data:video/mp4;base64," + base64.b64encode(video).decode()
    model = httpx.get(f"{base}/v1/models", timeout=30).json()["data"][0]["id"]  # the served name (the path)
    body = {
        "model": model,
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "video_url", "video_url": {"url": url}},
                    {"type": "text", "text": "How many chairs are in this room?"},
                ],
            }
        ],
        "max_tokens": options.max_tokens,
        "temperature": 0.0,
        "video_sampling": {
            "strategy": strategy,
            "num_frames": frames,
            "resized_height": options.height,
            "resized_width": options.width,
        },
    }
    tick = time.monotonic()
    reply = httpx.post(f"{base}/v1/chat/completions", json=body, timeout=options.request_timeout_s)
    latency = time.monotonic() - tick
    if reply.status_code != 200:
        raise RuntimeError(f"{strategy} question: HTTP {reply.status_code}: {reply.text[:2000]}")
    answer = reply.json()
    if not answer["choices"][0]["message"].get("content") and answer["usage"]["completion_tokens"] == 0:
        raise RuntimeError(f"{strategy} question: empty answer {answer}")
    return {"latency_s": round(latency, 2), "video_frames": answer["video_frames"]}


def check(arch: str, checkpoint: Path, dtype: str, options: argparse.Namespace, logs: Path) -> dict[str, Any]:
    """Serve ``checkpoint``, ask both questions, stop: the architecture's JSON line."""
    video = synthetic_mp4(
        logs / f"room-{arch}.mp4", options.video_frames, options.video_height, options.video_width, fps=4
    )
    log = logs / f"server-{arch}.log"
    command = server_command(checkpoint, dtype, options, _free_port())
    with serving(command, log, options.start_timeout_s) as (base, start_s, memory):
        uniform = ask(base, video, "uniform", options.frames, options)
        space_aware = ask(base, video, "space_aware", options.space_aware_frames, options)
        memory.sample()
    return {
        "arch": arch,
        "dtype": dtype,
        "params": served_parameters(log.read_text()),
        "start_s": round(start_s, 1),
        "peak_rss_bytes": memory.peak,
        "uniform": uniform,
        "space_aware": space_aware,
    }


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.full_size_check", description=__doc__.splitlines()[0])
    parser.add_argument("--arch", choices=ARCHS, action="append", help="repeatable (default: both)")
    parser.add_argument("--size", choices=("full", "tiny"), default="full", help="tiny: the script's path, fast")
    parser.add_argument("--dtype", default=None, help="default: bfloat16 at full size, float32 tiny")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="where the checkpoints are kept")
    parser.add_argument("--frames", type=int, default=8, help="uniform question's frames")
    parser.add_argument("--space-aware-frames", type=int, default=8, help="space-aware question's frames")
    parser.add_argument("--candidates", type=int, default=16, help="space-aware candidates (VGGT pass size)")
    parser.add_argument("--video-frames", type=int, default=48, help="length of the synthetic video")
    # A wide 4:1 video keeps the geometry worker's float32 VGGT pass small (126x518 input, the seed's resize to
    # width 518); the frames the model sees are resized to --height x --width.
    parser.add_argument("--video-height", type=int, default=112)
    parser.add_argument("--video-width", type=int, default=448)
    parser.add_argument("--height", type=int, default=224, help="frames' size for the model")
    parser.add_argument("--width", type=int, default=308)
    parser.add_argument("--max-tokens", type=int, default=8)
    parser.add_argument("--max-model-len", type=int, default=1024)
    parser.add_argument("--start-timeout-s", type=float, default=3600)
    parser.add_argument("--request-timeout-s", type=float, default=3600)
    parser.add_argument("--logs", type=Path, default=None, help="keep server logs here (default: a temp folder)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    options = parse_args(argv)
    dtype = options.dtype or ("bfloat16" if options.size == "full" else "float32")
    options.cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="full-size-check-") as scratch:
        logs = options.logs or Path(scratch)
        logs.mkdir(parents=True, exist_ok=True)
        for arch in options.arch or ARCHS:
            checkpoint, built = ensure_checkpoint(options.cache, arch, options.size)
            if built is not None:
                print(json.dumps({"built": str(checkpoint), **built}), file=sys.stderr, flush=True)
            print(json.dumps(check(arch, checkpoint, dtype, options, logs)), flush=True)


if __name__ == "__main__":
    main()

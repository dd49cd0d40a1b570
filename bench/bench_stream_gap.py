"""How long a streaming answer stalls while the server takes in large request bodies.

``python -m bench.bench_stream_gap [--data-url-mb 48] [--upload-mb 192] [--tokens 1500] [--json PATH]``

One chat completion streams (text only, ``ignore_eos`` so it runs its full length); once its first chunk is in,
two large bodies arrive at the same time: a chat request carrying a ``data:`` URL video of ``--data-url-mb``
(JSON) and a ``POST /v1/files`` upload of ``--upload-mb`` (multipart). Their content is random bytes, so both are
refused once decoding starts: what is measured is taking the bodies in (reading, parsing, base64), the work
that can block the event loop every stream shares. The number is the longest gap between two chunks of the
stream, against the same stream with nothing else going on.

``--server-pythonpath DIR`` serves from another checkout (e.g. ``/work/main`` for a before/after comparison).
"""

from __future__ import annotations

import argparse
import base64
import itertools
import json
import os
import statistics
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

from bench.protocol import Protocol, notes
from bench.servers import ours, running

MiB = 1 << 20


def _stream_gaps(base: str, tokens: int, started: threading.Event) -> list[float]:
    """Seconds between consecutive chunks of one streamed completion; ``started`` is set at the first chunk."""
    body = {
        "model": "m",
        "messages": [{"role": "user", "content": "Describe a room."}],
        "max_tokens": tokens,
        "ignore_eos": True,
        "temperature": 0,
        "stream": True,
    }
    arrivals: list[float] = []
    with httpx.stream("POST", f"{base}/v1/chat/completions", json=body, timeout=600) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                arrivals.append(time.perf_counter())
                started.set()
    return [later - earlier for earlier, later in itertools.pairwise(arrivals)]


def _large_data_url_request(base: str, data: bytes) -> int:
    url = "data:video/mp4;base64," + base64.b64encode(data).decode()
    part = {"type": "video_url", "video_url": {"url": url}}
    body = {"model": "m", "max_tokens": 1, "messages": [{"role": "user", "content": [part]}]}
    content = json.dumps(body).encode()
    return httpx.post(
        f"{base}/v1/chat/completions", content=content, headers={"Content-Type": "application/json"}, timeout=600
    ).status_code


def _large_upload(base: str, data: bytes) -> int:
    return httpx.post(f"{base}/v1/files", files={"file": ("big.mp4", data, "video/mp4")}, timeout=600).status_code


def _loaded_gaps(base: str, tokens: int, data_url: bytes, upload: bytes) -> tuple[list[float], list[int]]:
    started = threading.Event()
    gaps: list[float] = []
    statuses: list[int] = []
    stream = threading.Thread(target=lambda: gaps.extend(_stream_gaps(base, tokens, started)))
    stream.start()
    started.wait(600)
    senders = [
        threading.Thread(target=lambda: statuses.append(_large_data_url_request(base, data_url))),
        threading.Thread(target=lambda: statuses.append(_large_upload(base, upload))),
    ]
    for sender in senders:
        sender.start()
    for thread in (*senders, stream):
        thread.join()
    return gaps, statuses


def measure(data_url_mb: int = 48, upload_mb: int = 192, tokens: int = 1500, server_pythonpath: str = "") -> dict:
    """Chunk gaps of a stream alone and while a large data-URL request and a large upload are received."""
    from model_plugin.tiny import write_tiny_checkpoint

    work = Path(tempfile.mkdtemp(prefix="bench-stream-gap-"))
    checkpoint = write_tiny_checkpoint(work / "tiny", seed=0)
    data_url = os.urandom(data_url_mb * MiB)
    upload = os.urandom(upload_mb * MiB)
    caps = ["--served-model-name", "m", "--uploads-dir", str(work / "up")]
    caps += ["--max-video-bytes", str(max(data_url_mb, upload_mb) * MiB + MiB)]
    if server_pythonpath:
        os.environ["PYTHONPATH"] = server_pythonpath  # the child server imports that checkout's packages
    with running(ours(checkpoint, *caps), work / "server.log") as base:
        _stream_gaps(base, 16, threading.Event())  # warm-up, not counted
        protocol = Protocol()  # one stream each: calibrated, re-run once when the machine's speed moved
        alone = protocol.run_pass("stream alone", lambda: _stream_gaps(base, tokens, threading.Event()))
        loaded, statuses = protocol.run_pass(
            "stream while loaded", lambda: _loaded_gaps(base, tokens, data_url, upload)
        )
    samples = {"alone": alone, "loaded": loaded}
    return {
        "meta": {
            "data_url_mb": data_url_mb,
            "upload_mb": upload_mb,
            "tokens": tokens,
            "server": server_pythonpath or "this checkout",
            "large_request_statuses": sorted(statuses),
            "reps": 1,
            "protocol": protocol.meta(),
        },
        "samples_s": samples,
        "max_gap_ms": {name: max(values) * 1000 for name, values in samples.items()},
        "median_gap_ms": {name: statistics.median(values) * 1000 for name, values in samples.items()},
    }


def to_markdown(result: dict[str, Any]) -> str:
    meta, longest, median = result["meta"], result["max_gap_ms"], result["median_gap_ms"]
    load = f"a {meta['data_url_mb']} MiB data-URL chat request + a {meta['upload_mb']} MiB upload"
    return (
        "\n".join(
            [
                f"| one stream of {meta['tokens']} tokens each | longest gap between chunks | median gap |",
                "| --- | ---: | ---: |",
                f"| alone | {longest['alone']:.0f} ms | {median['alone']:.1f} ms |",
                f"| while the server receives {load} | {longest['loaded']:.0f} ms | {median['loaded']:.1f} ms |",
            ]
        )
        + "\n"
        + ("\n" + notes(meta) + "\n" if notes(meta) else "")
    )


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3))
    for name, gaps in result["samples_s"].items():
        ax.plot([gap * 1000 for gap in gaps], label=name, linewidth=0.8)
    ax.set_xlabel("chunk")
    ax.set_ylabel("gap before it (ms)")
    ax.set_yscale("log")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_stream_gap")
    parser.add_argument("--data-url-mb", type=int, default=48, help="video bytes in the data URL (default: 48)")
    parser.add_argument("--upload-mb", type=int, default=192, help="bytes of the multipart upload (default: 192)")
    parser.add_argument("--tokens", type=int, default=1500, help="length of the measured stream (default: 1500)")
    parser.add_argument("--server-pythonpath", default="", help="serve from this checkout instead (before/after)")
    parser.add_argument("--json", type=Path, help="also write the result here")
    args = parser.parse_args(argv)
    result = measure(args.data_url_mb, args.upload_mb, args.tokens, args.server_pythonpath)
    print(to_markdown(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()

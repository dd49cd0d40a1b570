"""vLLM data parallel behind our one API server: ``spatial-mllm-serve --data-parallel-size 2`` on the tiny model.

vLLM's ``AsyncLLM`` renders and processes every request in the API process (our media connector and prepared-frame
store live there) and sends the processed inputs to one of its engine-core processes, chosen by its internal load
balancer or by the ``X-data-parallel-rank`` header. So the checks are: both engines answer (vLLM's per-engine
Prometheus series, label ``engine``), each engine's answer equals DP=1's token for token (uniform and
space-aware sampling), and a video prepared for one engine is a frame-cache hit for the other.

The DP=2 server lives only while its requests run (module fixture); DP=1 is the session's ``live`` server with the
same checkpoint and caps.
"""

from __future__ import annotations

import concurrent.futures
import re
from pathlib import Path

import httpx
import pytest
from conftest import Server, engine_binding, start_server
from media import data_url

pytestmark = pytest.mark.engine
MODEL = "spatial-mllm-tiny"
ENGINES = 2
# two engine processes and vLLM's DP coordinator start one after another, each importing vLLM (spawned on CPU)
START_TIMEOUT_S = 900
QUESTIONS = {
    "uniform": {"strategy": "uniform", "num_frames": 4},
    "space_aware": {"strategy": "space_aware", "num_frames": 4},
}


def _body(video: str, sampling: dict, question: str = "Count chairs.") -> dict:
    return {
        "model": MODEL,
        "messages": [
            {
                "role": "user",
                "content": [{"type": "video_url", "video_url": {"url": video}}, {"type": "text", "text": question}],
            }
        ],
        "max_tokens": 12,
        "temperature": 0,
        "logprobs": True,
        "video_sampling": sampling,
    }


def _ask(server: Server, body: dict, rank: int | None = None) -> dict:
    headers = {**server.headers, **({"X-data-parallel-rank": str(rank)} if rank is not None else {})}
    reply = httpx.post(f"{server.base}/v1/chat/completions", json=body, headers=headers, timeout=600)
    assert reply.status_code == 200, reply.text
    return reply.json()


def _tokens(answer: dict) -> list[str]:
    """The generated tokens (from logprobs), one per step: equal lists mean equal answers token for token."""
    tokens = [entry["token"] for entry in answer["choices"][0]["logprobs"]["content"]]
    assert len(tokens) == answer["usage"]["completion_tokens"] > 0
    return tokens


def _per_engine(metrics: str, name: str) -> dict[str, float]:
    """A vLLM counter summed per ``engine`` label."""
    totals: dict[str, float] = {}
    for match in re.finditer(rf"^{re.escape(name)}\{{([^}}]*)\}} ([0-9.e+-]+)$", metrics, re.M):
        engine = re.search(r'engine="(\d+)"', match.group(1))
        if engine:
            totals[engine.group(1)] = totals.get(engine.group(1), 0.0) + float(match.group(2))
    return totals


def _counter(metrics: str, name: str, labels: str) -> float:
    pattern = re.compile(rf"^{re.escape(name)}\{{[^}}]*{re.escape(labels)}[^}}]*\}} ([0-9.e+-]+)$", re.M)
    return sum(float(m.group(1)) for m in pattern.finditer(metrics))


@pytest.fixture(scope="module")
def dp2(tiny_checkpoint: Path, room_video: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Everything the checks need from a DP=2 server, which is stopped before the module's tests compare."""
    root = tmp_path_factory.mktemp("dp2")
    video = data_url(room_video)
    dp = ("--data-parallel-size", str(ENGINES))
    binding = engine_binding(ENGINES)
    with start_server(tiny_checkpoint, root, *dp, env=binding, timeout_s=START_TIMEOUT_S) as (server, _):
        before = httpx.get(f"{server.base}/metrics", timeout=30).text
        by_rank = {
            (name, rank): _ask(server, _body(video, sampling), rank)
            for name, sampling in QUESTIONS.items()
            for rank in range(ENGINES)
        }
        after_pinned = httpx.get(f"{server.base}/metrics", timeout=30).text
        # no header: vLLM's internal load balancer spreads a burst over the engines
        burst_bodies = [_body(video, QUESTIONS["uniform"], f"Question {i}?") for i in range(2 * ENGINES)]
        with concurrent.futures.ThreadPoolExecutor(len(burst_bodies)) as pool:
            burst = list(pool.map(lambda body: _ask(server, body), burst_bodies))
        after = httpx.get(f"{server.base}/metrics", timeout=30).text
        log = server.log.read_text(errors="replace")
    return {
        "video": video,
        "by_rank": by_rank,
        "burst": burst,
        "burst_bodies": burst_bodies,
        "metrics": (before, after_pinned, after),
        "log": log,
    }


def test_both_engines_start_and_serve(dp2: dict) -> None:
    before, after_pinned, after = dp2["metrics"]
    served = _per_engine(after_pinned, "vllm:request_success_total")
    assert set(served) == {"0", "1"}, served
    # each engine answered exactly the pinned questions sent to it (one per sampling strategy)
    assert all(served[e] - _per_engine(before, "vllm:request_success_total").get(e, 0) == len(QUESTIONS) for e in "01")
    burst = {
        e: n - _per_engine(after_pinned, "vllm:request_success_total")[e]
        for e, n in _per_engine(after, "vllm:request_success_total").items()
    }
    assert sum(burst.values()) == len(dp2["burst"]) and min(burst.values()) >= 1, burst  # the balancer used both


def test_every_engine_answers_as_dp1_token_for_token(dp2: dict, live: Server) -> None:
    for name, sampling in QUESTIONS.items():
        single = _tokens(_ask(live, _body(dp2["video"], sampling)))
        for rank in range(ENGINES):
            assert _tokens(dp2["by_rank"][(name, rank)]) == single, (name, rank)
    for body, answer in zip(dp2["burst_bodies"], dp2["burst"], strict=True):
        assert _tokens(answer) == _tokens(_ask(live, body))


def test_frames_are_prepared_once_in_the_api_process_for_all_engines(dp2: dict) -> None:
    before, after_pinned, _ = dp2["metrics"]
    hits = _counter(after_pinned, "spatial_mllm_sampling_cache_total", 'result="hit"') - _counter(
        before, "spatial_mllm_sampling_cache_total", 'result="hit"'
    )
    misses = _counter(after_pinned, "spatial_mllm_sampling_cache_total", 'result="miss"') - _counter(
        before, "spatial_mllm_sampling_cache_total", 'result="miss"'
    )
    # per strategy: the first engine's question prepared the frames, the second engine's found them
    assert (misses, hits) == (len(QUESTIONS), len(QUESTIONS) * (ENGINES - 1))
    for name in QUESTIONS:
        used = [dp2["by_rank"][(name, rank)]["video_frames"] for rank in range(ENGINES)]
        assert used[0] == used[1]  # the same frames went to both engines
    space_aware_passes = _counter(after_pinned, "spatial_mllm_geometry_passes_total", 'outcome="done"') - _counter(
        before, "spatial_mllm_geometry_passes_total", 'outcome="done"'
    )
    assert space_aware_passes == 1  # one VGGT pass (the worker beside the API process) served both engines

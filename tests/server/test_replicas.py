"""Two real servers (replicas A and B, the tiny model) on one uploads directory, then Debian's nginx in front of
them with deploy/nginx/spatial-mllm.conf. B starts with vLLM data parallel (``--data-parallel-size 2``), A with one
engine, so the same two servers check both:

- data parallel behind our one API server: vLLM's ``AsyncLLM`` renders and processes every request in the API
  process (our media connector and prepared-frame store live there) and sends the processed inputs to one of its
  engine-core processes, chosen by its internal load balancer or by the ``X-data-parallel-rank`` header. Both
  engines answer (vLLM's per-engine Prometheus series, label ``engine``), each engine's answer equals A's (DP=1)
  token for token (uniform and space-aware sampling), and a video prepared for one engine is a frame-cache hit for
  the other;
- replicas: what one stores, the other serves; quotas and deletes hold across them; a restart of one never loses an
  upload the other is receiving; a space-aware selection made on one is reused on the other; the proxy keeps each
  video on one replica and fails over to the other when it stops; and, last, the engine of the replica left dies in
  the middle of a request.

The replicas are shared by every test here (one module-scoped fixture): the restart test stops B with SIGINT
(Ctrl-C while serving; every other stop is SIGTERM) and starts it again with one engine, the proxy test stops one
of them, and the engine-death test destroys the other. Replicas run with ``VLLM_KEEP_ALIVE_ON_ENGINE_DEATH=1``, so
the API process of a replica whose engine died stays up to be inspected; without it (the default) vLLM's watchdog
also stops the API process so an orchestrator restarts the container. The variable changes nothing while the
engine lives. Starting these servers once for all of it saves the suite two server starts (minutes on 2 cores).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import hashlib
import re
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import psutil
import pytest
from conftest import API_KEYS, REPO_ROOT, START_TIMEOUT_S, Server, engine_binding, start_server
from media import data_url, encode_mp4
from processes import free_port, stop, stop_cleanly

from bench.bench_data_parallel import per_engine
from model_plugin.reference.demo import synthetic_video
from server.uploads.file_store import LEASE_RENEW_S, LEASE_STALE_S, FileStore

pytestmark = pytest.mark.engine
MODEL = "spatial-mllm-tiny"
QUOTA_PER_KEY = 3 << 20
NGINX_CONF = REPO_ROOT / "deploy" / "nginx" / "spatial-mllm.conf"
KEY_ONE = {"Authorization": f"Bearer {API_KEYS[0]}"}
KEEP_ALIVE = {"VLLM_KEEP_ALIVE_ON_ENGINE_DEATH": "1"}
ENGINES = 2  # B's data-parallel engines
QUESTIONS = {
    "uniform": {"strategy": "uniform", "num_frames": 4},
    "space_aware": {"strategy": "space_aware", "num_frames": 4},
}


class Replicas:
    """Replicas ``a`` and ``b``: servers on the tiny checkpoint with one shared ``--uploads-dir``."""

    def __init__(self, checkpoint: Path, root: Path) -> None:
        self.checkpoint, self.root = checkpoint, root
        self.uploads = root / "shared-uploads"
        self.servers: dict[str, Server] = {}
        self._stacks: dict[str, contextlib.ExitStack] = {}
        self._stop_signals: dict[str, signal.Signals] = {}

    def start(self, name: str, engines: int = 1, stop_signal: signal.Signals = signal.SIGTERM) -> None:
        """Start one replica with ``engines`` data-parallel engines (one replica at a time: two loading at once on
        a small CI machine take longer than twice one); ``stop_signal`` is the signal that stops it, and
        :meth:`stop` checks that stop."""
        stack = contextlib.ExitStack()
        root = self.root / name
        root.mkdir(exist_ok=True)
        flags = ["--uploads-dir", str(self.uploads), "--uploads-quota-bytes-per-key", str(QUOTA_PER_KEY)]
        env = dict(KEEP_ALIVE)
        if engines > 1:
            flags += ["--data-parallel-size", str(engines)]
            env.update(engine_binding(engines))
        # data parallel's engine processes and its coordinator start one after another, each importing vLLM
        timeout_s = START_TIMEOUT_S * engines
        server, _ = stack.enter_context(
            start_server(self.checkpoint, root, *flags, env=env, timeout_s=timeout_s, clean_stop=False)
        )
        self.servers[name], self._stacks[name], self._stop_signals[name] = server, stack, stop_signal

    def stop(self, name: str, clean: bool = True) -> None:
        """Stop a replica; ``clean``: with its stop signal, checking what an operator relies on (exit code 0, no
        process left, one line of ours, no traceback); otherwise (its engine was killed) SIGTERM, then SIGKILL."""
        server, signum = self.servers.pop(name), self._stop_signals.pop(name)
        if clean:
            stop_cleanly(server.process, server.log, signum=signum)
        self._stacks.pop(name).close()

    def close(self) -> None:
        for name in list(self._stacks):
            self.stop(name)

    def __getitem__(self, name: str) -> Server:
        return self.servers[name]


@pytest.fixture(scope="module")
def replicas(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Replicas]:
    pair = Replicas(tiny_checkpoint, tmp_path_factory.mktemp("replicas"))
    try:
        pair.start("a")
        pair.start("b", engines=ENGINES, stop_signal=signal.SIGINT)  # Ctrl-C while serving (the restart test)
        yield pair
    finally:
        pair.close()


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


def _counter(metrics: str, name: str, labels: str) -> float:
    pattern = re.compile(rf"^{re.escape(name)}\{{[^}}]*{re.escape(labels)}[^}}]*\}} ([0-9.e+-]+)$", re.M)
    return sum(float(m.group(1)) for m in pattern.finditer(metrics))


@pytest.fixture(scope="module")
def dp2(replicas: Replicas, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """B's data-parallel answers and metrics: pinned to each engine, then a burst without the header. The video is
    one of its own: the replica tests after these count the passes and cache hits that ``room_video`` causes."""
    frames = synthetic_video(frames=24, height=112, width=140, seed=21).permute(0, 2, 3, 1).numpy()
    path = encode_mp4(np.ascontiguousarray(frames), tmp_path_factory.mktemp("dp") / "room.mp4", fps=8)
    server, video = replicas["b"], data_url(path)
    before = httpx.get(f"{server.base}/metrics", timeout=30).text
    by_rank = {
        (name, rank): _ask(server, _body(video, sampling), rank) for name, sampling in QUESTIONS.items()
        for rank in range(ENGINES)
    }  # fmt: skip
    after_pinned = httpx.get(f"{server.base}/metrics", timeout=30).text
    # no header: vLLM's internal load balancer spreads a burst over the engines
    burst_bodies = [_body(video, QUESTIONS["uniform"], f"Question {i}?") for i in range(2 * ENGINES)]
    with concurrent.futures.ThreadPoolExecutor(len(burst_bodies)) as pool:
        burst = list(pool.map(lambda body: _ask(server, body), burst_bodies))
    after = httpx.get(f"{server.base}/metrics", timeout=30).text
    return {
        "video": video,
        "by_rank": by_rank,
        "burst": burst,
        "burst_bodies": burst_bodies,
        "metrics": (before, after_pinned, after),
    }


def test_both_data_parallel_engines_start_and_serve(dp2: dict) -> None:
    before, after_pinned, after = dp2["metrics"]
    served = per_engine(after_pinned, "vllm:request_success_total")
    assert set(served) == {"0", "1"}, served
    # each engine answered exactly the pinned questions sent to it (one per sampling strategy)
    assert all(served[e] - per_engine(before, "vllm:request_success_total").get(e, 0) == len(QUESTIONS) for e in "01")
    burst = {
        e: n - per_engine(after_pinned, "vllm:request_success_total")[e]
        for e, n in per_engine(after, "vllm:request_success_total").items()
    }
    assert sum(burst.values()) == len(dp2["burst"]) and min(burst.values()) >= 1, burst  # the balancer used both


def test_every_engine_answers_as_dp1_token_for_token(dp2: dict, replicas: Replicas) -> None:
    single_engine = replicas["a"]
    for name, sampling in QUESTIONS.items():
        single = _tokens(_ask(single_engine, _body(dp2["video"], sampling)))
        for rank in range(ENGINES):
            assert _tokens(dp2["by_rank"][(name, rank)]) == single, (name, rank)
    for body, answer in zip(dp2["burst_bodies"], dp2["burst"], strict=True):
        assert _tokens(answer) == _tokens(_ask(single_engine, body))


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


@pytest.fixture(scope="module")
def big_video(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """About 1.4 MB of noise (150 frames, 112x140): two of them fit the per-key quota, three do not."""
    frames = np.random.default_rng(7).integers(0, 256, (150, 112, 140, 3), dtype=np.uint8)
    data = encode_mp4(frames, tmp_path_factory.mktemp("big") / "big.mp4", fps=8).read_bytes()
    assert QUOTA_PER_KEY // 3 < len(data) <= QUOTA_PER_KEY // 2
    return data


def upload(server: Server, data: bytes, headers: dict[str, str] | None = None, base: str | None = None):
    files = {"file": ("video.mp4", data, "video/mp4")}
    return httpx.post(
        f"{base or server.base}/v1/files", files=files, data={"purpose": "user_data"},
        headers=headers or server.headers, timeout=300,
    )  # fmt: skip


def ask(server: Server, file_id: str, base: str | None = None, headers: dict[str, str] | None = None, **sampling):
    content = [{"type": "file", "file": {"file_id": file_id}}, {"type": "text", "text": "How many chairs?"}]
    body = {"model": MODEL, "messages": [{"role": "user", "content": content}], "max_tokens": 4, "temperature": 0}
    if sampling:
        body["video_sampling"] = sampling
    return httpx.post(
        f"{base or server.base}/v1/chat/completions", json=body, headers={**server.headers, **(headers or {})},
        timeout=300,
    )  # fmt: skip


def metric(server: Server, name: str, labels: str = "") -> float:
    text = httpx.get(f"{server.base}/metrics", timeout=30).text
    pattern = re.compile(rf"^{re.escape(name)}(\{{[^}}]*{re.escape(labels)}[^}}]*\}})? ([0-9.e+-]+)$", re.M)
    return sum(float(m.group(2)) for m in pattern.finditer(text))


def sampling_counts(server: Server) -> dict[str, float]:
    return {r: metric(server, "spatial_mllm_sampling_cache_total", f'result="{r}"') for r in ("hit", "miss", "joined")}


def test_an_upload_on_one_replica_is_answered_and_listed_on_the_other(replicas: Replicas, room_video: Path) -> None:
    a, b = replicas["a"], replicas["b"]
    stored = upload(a, room_video.read_bytes())
    assert stored.status_code == 200, stored.text
    file_id = stored.json()["id"]
    assert httpx.get(f"{b.base}/v1/files/{file_id}", headers=b.headers, timeout=30).json() == stored.json()
    reply = ask(b, file_id)
    assert reply.status_code == 200, reply.text
    for server in (a, b):
        listed = httpx.get(f"{server.base}/v1/files", headers=server.headers, timeout=30).json()
        assert file_id in [f["id"] for f in listed["data"]]


def test_a_quota_filled_through_one_replica_is_refused_on_the_other(replicas: Replicas, big_video: bytes) -> None:
    a, b = replicas["a"], replicas["b"]
    kept = [upload(a, big_video, KEY_ONE) for _ in range(2)]
    assert [r.status_code for r in kept] == [200, 200], [r.text for r in kept]
    refused = upload(b, big_video, KEY_ONE)
    assert refused.status_code == 507, refused.text
    assert f"this API key's quota of {QUOTA_PER_KEY} bytes" in refused.json()["error"]["message"]
    for reply in kept:
        assert httpx.delete(f"{b.base}/v1/files/{reply.json()['id']}", headers=KEY_ONE, timeout=30).status_code == 200
    assert upload(a, big_video, KEY_ONE).status_code == 200  # freed through B, usable through A


def test_a_delete_on_one_replica_is_a_404_on_the_other(replicas: Replicas, room_video: Path) -> None:
    a, b = replicas["a"], replicas["b"]
    file_id = upload(a, room_video.read_bytes()).json()["id"]
    assert ask(a, file_id).status_code == 200
    assert httpx.delete(f"{b.base}/v1/files/{file_id}", headers=b.headers, timeout=30).status_code == 200
    gone = httpx.get(f"{a.base}/v1/files/{file_id}", headers=a.headers, timeout=30)
    assert gone.status_code == 404 and gone.json()["error"]["param"] == "file_id"
    assert ask(a, file_id).status_code == 404  # even though A answered about it a moment ago
    assert file_id not in [
        f["id"] for f in httpx.get(f"{a.base}/v1/files", headers=a.headers, timeout=30).json()["data"]
    ]


def test_a_space_aware_selection_made_on_one_replica_is_reused_on_the_other(
    replicas: Replicas, room_video: Path
) -> None:
    a, b = replicas["a"], replicas["b"]
    file_id = upload(a, room_video.read_bytes()).json()["id"]
    passes_on_a = metric(a, "spatial_mllm_geometry_passes_total", 'outcome="done"')
    on_a = ask(a, file_id, strategy="space_aware", num_frames=4)
    assert on_a.status_code == 200, on_a.text
    assert metric(a, "spatial_mllm_geometry_passes_total", 'outcome="done"') == passes_on_a + 1
    stored_before = metric(b, "spatial_mllm_sampling_cache_total", 'result="stored_selection"')
    passes_on_b = metric(b, "spatial_mllm_geometry_passes_total")
    on_b = ask(b, file_id, strategy="space_aware", num_frames=4)
    assert on_b.status_code == 200, on_b.text
    assert metric(b, "spatial_mllm_sampling_cache_total", 'result="stored_selection"') == stored_before + 1
    assert metric(b, "spatial_mllm_geometry_passes_total") == passes_on_b  # no VGGT pass on B
    assert on_b.json()["video_frames"] == on_a.json()["video_frames"]  # the same frames...
    assert on_b.json()["choices"][0]["message"] == on_a.json()["choices"][0]["message"]  # ...the same answer


def test_a_restart_of_one_replica_never_loses_an_upload_the_other_is_receiving(
    replicas: Replicas, big_video: bytes
) -> None:
    """A receives a large upload whose client stalls mid-body for longer than a lease lives, while B stops (Ctrl-C)
    and starts again (B's start-up cleans the shared directory) and, once the partial upload would be stale had A
    stopped renewing its lease, one more process cleans the directory as a replica starting then would; the upload
    completes intact. B's start and the wait for the lease overlap (a minute the suite once spent idle)."""
    a = replicas["a"]
    boundary = "store-test-boundary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nuser_data\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.mp4"\r\n'
        "Content-Type: video/mp4\r\n\r\n"
    ).encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    resume = threading.Event()

    def body() -> Iterator[bytes]:
        yield head + big_video[: 256 << 10]
        assert resume.wait(timeout=900)
        for start in range(256 << 10, len(big_video), 64 << 10):
            yield big_video[start : start + (64 << 10)]
        yield tail

    headers = {**a.headers, "Content-Type": f"multipart/form-data; boundary={boundary}"}
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        sent = pool.submit(httpx.post, f"{a.base}/v1/files", content=body(), headers=headers, timeout=900)
        deadline = time.monotonic() + 60
        while not (partials := list(replicas.uploads.glob(".*.partial"))):
            assert time.monotonic() < deadline and not sent.done(), "A never started writing the upload"
            time.sleep(0.2)
        receiving_since = time.monotonic()
        replicas.stop("b")
        with concurrent.futures.ThreadPoolExecutor(1) as restart:
            restarted = restart.submit(replicas.start, "b")  # its start-up cleanup runs whenever its engine is up
            time.sleep(max(0.0, LEASE_STALE_S + 2 * LEASE_RENEW_S - (time.monotonic() - receiving_since)))
            FileStore(replicas.uploads, ttl_s=3600, quota_bytes=QUOTA_PER_KEY).close()  # its start-up cleanup
            assert all(p.exists() for p in partials)
            restarted.result()
        assert all(p.exists() for p in partials)
        resume.set()
        reply = sent.result()
    assert reply.status_code == 200, reply.text
    file_id = reply.json()["id"]
    b = replicas["b"]
    content = httpx.get(f"{b.base}/v1/files/{file_id}/content", headers=b.headers, timeout=60)
    assert hashlib.sha256(content.content).digest() == hashlib.sha256(big_video).digest()
    assert httpx.delete(f"{b.base}/v1/files/{file_id}", headers=b.headers, timeout=30).status_code == 200


@contextlib.contextmanager
def nginx(root: Path, upstreams: list[str]) -> Iterator[tuple[str, Path]]:
    """Debian's nginx in the foreground with deploy/nginx/spatial-mllm.conf, its replicas replaced by
    ``upstreams``; its own prefix, temp directories and logs under ``root``. Yields its URL and access log."""
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(binary).exists():
        pytest.fail("nginx is not installed (apt-get install nginx-light; .ci/run installs it)")
    root.mkdir(exist_ok=True)
    port = free_port()
    site = NGINX_CONF.read_text()
    for index, upstream in enumerate(upstreams):
        site = site.replace(f"replica-{index}.spatial-mllm:8000", upstream)
    site = site.replace("listen 8080;", f"listen 127.0.0.1:{port};")
    assert all(u in site for u in upstreams) and f":{port};" in site
    (root / "site.conf").write_text(site)
    access_log = root / "access.log"
    (root / "nginx.conf").write_text(
        f"daemon off;\nmaster_process off;\npid {root}/nginx.pid;\nerror_log {root}/error.log info;\n"
        "events { worker_connections 64; }\n"
        "http {\n"
        "    log_format routed '$http_x_video_id $upstream_addr $status';\n"
        f"    access_log {access_log} routed;\n"
        + "".join(f"    {kind}_temp_path {root}/{kind}-temp;\n" for kind in ("client_body", "proxy", "fastcgi"))
        + "".join(f"    {kind}_temp_path {root}/{kind}-temp;\n" for kind in ("uwsgi", "scgi"))
        + f"    include {root}/site.conf;\n}}\n"
    )
    command = [binary, "-p", str(root), "-c", str(root / "nginx.conf"), "-e", str(root / "error.log")]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, (root / "error.log").read_text()
            with contextlib.suppress(httpx.HTTPError):
                httpx.get(f"{base}/", timeout=2)
                break
            assert time.monotonic() < deadline, "nginx did not start listening"
            time.sleep(0.2)
        yield base, access_log
    finally:
        stop(process, timeout_s=10)


def test_nginx_keeps_a_video_on_one_replica_and_fails_over_to_the_other(replicas: Replicas, tmp_path: Path) -> None:
    servers = {name: replicas[name] for name in ("a", "b")}
    upstreams = [server.base.removeprefix("http://") for server in servers.values()]
    frames = np.random.default_rng(99).integers(0, 256, (24, 112, 140, 3), dtype=np.uint8)
    video = encode_mp4(frames, tmp_path / "unseen.mp4", fps=8).read_bytes()  # in no replica's cache yet
    key_value = hashlib.sha256(video).hexdigest()[:32]  # what a client knows before uploading
    key = {"X-Video-Id": key_value}
    any_server = servers["a"]
    with nginx(tmp_path / "nginx", upstreams) as (proxy, access_log):
        stored = upload(any_server, video, {**any_server.headers, **key}, base=proxy)
        assert stored.status_code == 200, stored.text
        file_id = stored.json()["id"]
        before = {name: sampling_counts(server) for name, server in servers.items()}
        for _ in range(3):
            reply = ask(any_server, file_id, base=proxy, headers=key)
            assert reply.status_code == 200, reply.text
        after = {name: sampling_counts(server) for name, server in servers.items()}
        (chosen,) = [name for name in servers if after[name] != before[name]]  # one replica saw every question
        (other,) = [name for name in servers if name != chosen]
        assert after[chosen]["miss"] == before[chosen]["miss"] + 1
        assert after[chosen]["hit"] == before[chosen]["hit"] + 2  # its cache-hit metric grows, the other's not
        routed = {line.split()[1] for line in access_log.read_text().splitlines() if line.startswith(key_value)}
        assert routed == {servers[chosen].base.removeprefix("http://")}  # the upload too

        replicas.stop(chosen)
        moved_before = sampling_counts(servers[other])
        for _ in range(2):
            reply = ask(servers[other], file_id, base=proxy, headers=key)  # the same file id, through the proxy
            assert reply.status_code == 200, reply.text
        moved_after = sampling_counts(servers[other])
        assert (moved_after["miss"], moved_after["hit"]) == (moved_before["miss"] + 1, moved_before["hit"] + 1)


def _engine_core(pid: int) -> psutil.Process:
    for child in psutil.Process(pid).children(recursive=True):
        if "EngineCore" in child.name() or any("EngineCore" in part for part in child.cmdline()):
            return child
    raise AssertionError("no EngineCore process under the server")


async def _engine_running(client: httpx.AsyncClient) -> float:
    text = (await client.get("/metrics")).text
    return sum(float(v) for v in re.findall(r"^vllm:num_requests_running\{[^}]*\} (\S+)$", text, re.M))


def test_engine_death_gives_clean_503s_and_unhealthy(replicas: Replicas, room_video: Path) -> None:
    """The engine of the replica left by the proxy test is killed while it generates: the request in flight gets a
    503 with Retry-After, ``/health`` and ``/ready`` say so, later requests get 503s, and the API process stays up."""
    (name,) = replicas.servers  # the proxy test stopped the other
    srv = replicas[name]
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": [{"type": "video_url", "video_url": {"url": data_url(room_video)}}]}],
        "max_tokens": 3000,
        "ignore_eos": True,
        "temperature": 1.0,
    }

    async def in_flight() -> httpx.Response:
        async with httpx.AsyncClient(base_url=srv.base, headers=srv.headers, timeout=120) as client:
            return await client.post("/v1/chat/completions", json=body)

    async def scenario() -> httpx.Response:
        request = asyncio.create_task(in_flight())
        async with httpx.AsyncClient(base_url=srv.base, timeout=30) as probe:
            while await _engine_running(probe) < 1:  # generation under way (the request has 3000 tokens to go)
                assert not request.done(), request.result().text
                await asyncio.sleep(0.1)
        _engine_core(srv.process.pid).send_signal(signal.SIGKILL)
        return await request

    try:
        response = asyncio.run(scenario())
        assert response.status_code == 503, response.text
        assert response.json()["error"]["type"] == "ServiceUnavailableError"
        assert int(response.headers["retry-after"]) >= 1
        assert httpx.get(f"{srv.base}/health", timeout=10).status_code == 503
        unready = httpx.get(f"{srv.base}/ready", timeout=10)
        assert unready.status_code == 503 and unready.json()["parts"]["engine"] == "dead"
        again = httpx.post(f"{srv.base}/v1/chat/completions", json=body, headers=srv.headers, timeout=30)
        assert again.status_code == 503 and "retry-after" in again.headers
        assert srv.process.poll() is None  # the API process itself stayed up and answers
    finally:
        replicas.stop(name, clean=False)

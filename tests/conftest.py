"""Shared test configuration: golden fixtures, the tiny checkpoint, and one live server per session.

Fixtures are read from ``../shared/fixtures`` beside the checkout (never copied into the repo). A missing
fixture directory is a hard failure, not a skip: a green run must mean the fixtures were reproduced.

The ``server`` fixture runs a real ``spatial-mllm-serve`` process (the tiny checkpoint on CPU, uvicorn on
127.0.0.1) once per session, started by the first test that asks for it. Caps are small so the tiny model
answers in well under a second; two API keys are configured so tests cover several keys.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from hypothesis import settings as hypothesis_settings
from media import encode_mp4
from processes import READY_LINE, free_port, stop, stop_cleanly, wait_until_ready
from xdist_groups import SESSION_SERVER_FIXTURES, SuiteScheduling, run_order

REPO_ROOT = Path(__file__).resolve().parents[1]
FIXTURES_DIR = Path(os.environ.get("SPATIAL_MLLM_FIXTURES", REPO_ROOT.parent / "shared" / "fixtures"))


# Property tests run the same examples on every machine and keep no example database between runs: a red CI
# must reproduce on a developer's machine, and a green one must not depend on what an earlier run found.
hypothesis_settings.register_profile("deterministic", derandomize=True, database=None, print_blob=True)
hypothesis_settings.load_profile("deterministic")

# Fixtures that start a vLLM engine or a live server. A test that uses one (directly or through another fixture)
# is marked ``engine`` automatically, so ``pytest -m "not engine"`` never starts an engine.
ENGINE_FIXTURES = frozenset({"server", "live", "llm", "vllm_server"})


def engine_cores() -> str | None:
    """The CPU ids this pytest-xdist worker's vLLM engines bind their OpenMP threads to (vLLM's
    ``VLLM_CPU_OMP_THREADS_BIND`` syntax), or None outside xdist or when the machine has fewer cores than workers.

    vLLM's automatic binding puts every CPU engine's threads on the same core, so two workers' engines would take
    turns on one core while the other idles; a share of the cores each lets engine tests run two at a time."""
    worker, count = os.environ.get("PYTEST_XDIST_WORKER"), os.environ.get("PYTEST_XDIST_WORKER_COUNT")
    if not worker or not count:
        return None
    cores, workers = sorted(os.sched_getaffinity(0)), int(count)
    share = len(cores) // workers
    if share == 0:
        return None
    index = int(worker.removeprefix("gw"))
    return ",".join(str(core) for core in cores[index * share : (index + 1) * share])


def pytest_configure(config: pytest.Config) -> None:
    cores = engine_cores()
    if cores is not None:  # an operator's own binding wins
        os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", cores)


def engine_binding(engines: int) -> dict[str, str]:
    """The environment for a server with ``engines`` data-parallel engines on this worker's cores (vLLM wants one
    ``|``-separated CPU list per engine)."""
    cores = os.environ.get("VLLM_CPU_OMP_THREADS_BIND")
    if cores is None or cores in ("auto", "nobind"):
        return {}
    return {"VLLM_CPU_OMP_THREADS_BIND": "|".join([cores.split("|")[0]] * engines)}


def pytest_xdist_make_scheduler(config: pytest.Config, log):
    """``-n 2`` (``--dist loadgroup``, pyproject's addopts): whole files, and the session server's files together,
    to one worker each (:mod:`xdist_groups`)."""
    if config.getvalue("dist") == "loadgroup":
        return SuiteScheduling(config, log)
    return None


# the files with a test on the session server, for tests/test_xdist_groups.py
SESSION_SERVER_USERS = pytest.StashKey[set[str]]()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if ENGINE_FIXTURES.intersection(getattr(item, "fixturenames", ())) and not item.get_closest_marker("engine"):
            item.add_marker(pytest.mark.engine)
    config.stash[SESSION_SERVER_USERS] = {
        _relative(item) for item in items if SESSION_SERVER_FIXTURES.intersection(getattr(item, "fixturenames", ()))
    }
    # the order the scheduler hands out work units in (xdist_groups.run_order; order within a file is kept)
    items.sort(key=lambda item: run_order(_relative(item), item.get_closest_marker("engine") is not None))


def _relative(item: pytest.Item) -> str:
    return item.path.relative_to(REPO_ROOT).as_posix()


def fixture_path(*parts: str) -> Path:
    """Path inside the shared golden-fixture tree; fails the test when it is absent."""
    path = FIXTURES_DIR.joinpath(*parts)
    if not path.exists():
        pytest.fail(f"golden fixture missing: {path} (set SPATIAL_MLLM_FIXTURES or check out ../shared)")
    return path


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny random-weight checkpoint (original 4.51 layout, seed 0), built once per test session."""
    from model_plugin.tiny import write_tiny_checkpoint

    return write_tiny_checkpoint(tmp_path_factory.mktemp("tiny-spatial-mllm"), seed=0)


@pytest.fixture(scope="session")
def reference(tiny_checkpoint: Path):
    """The transformers reference model on the tiny checkpoint (the oracle of parity tests)."""
    from model_plugin.reference import SpatialMLLMForConditionalGeneration

    return SpatialMLLMForConditionalGeneration.from_pretrained(tiny_checkpoint).eval()


@pytest.fixture(scope="session")
def processor(tiny_checkpoint: Path):
    """The tiny checkpoints' Qwen2.5-VL processor (both architectures write the same tokenizer and processor)."""
    from transformers import AutoProcessor

    return AutoProcessor.from_pretrained(tiny_checkpoint)


# --- one real spatial-mllm-serve process per test session (used by tests/server and tests/bench) ---

START_TIMEOUT_S = 420
API_KEYS = ("test-key-one", "test-key-two")
# The tiny model needs 512 bytes of KV cache a token: 128 MiB holds 256k tokens, 16 times what 4 sequences of 4096
# can use. vLLM's CPU default (and the legacy VLLM_CPU_KVCACHE_SPACE in whole GiB) would hold 1 GiB or more per
# engine, which two test workers' engines at once cannot afford on a 24 GB machine.
KV_CACHE = "128M"


def engine_environment() -> dict[str, str]:
    """This process's environment for an engine the suite starts: without the legacy KV variable, which would
    override ``--kv-cache-memory-bytes``."""
    return {key: value for key, value in os.environ.items() if key != "VLLM_CPU_KVCACHE_SPACE"}


@dataclass(frozen=True)
class Server:
    base: str
    key: str
    log: Path
    uploads: Path
    process: subprocess.Popen
    media_root: Path  # the server's --allowed-local-media-path: file:// URLs under it are served

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}

    def log_tail(self, chars: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-chars:]


@contextlib.contextmanager
def start_server(
    checkpoint: Path,
    root: Path,
    *extra: str,
    env: dict[str, str] | None = None,
    timeout_s: float = START_TIMEOUT_S,
    clean_stop: bool = True,
    stop_signal: signal.Signals = signal.SIGTERM,
):
    """A real ``python -m server`` on the tiny checkpoint with the test caps; yields (Server, health statuses).

    Every start checks the ready line's promise (``/health`` and ``/v1/models`` answer at once when it shows).
    With ``clean_stop`` (every server but one whose engine a test kills), leaving the block stops the server with
    ``stop_signal`` and checks what an operator relies on (:func:`processes.stop_cleanly`): so every server of the
    suite also tests a signal while serving."""
    port = free_port()
    log = root / "server.log"
    uploads = root / "uploads"
    media_root = root / "media"
    media_root.mkdir(exist_ok=True)
    command = [
        sys.executable, "-m", "server",
        "--model", str(checkpoint),
        "--served-model-name", "spatial-mllm-tiny",
        "--host", "127.0.0.1", "--port", str(port),
        "--dtype", "float32", "--max-model-len", "4096", "--enforce-eager", "--max-num-seqs", "4",
        "--block-size", "32", "--enable-prefix-caching", "--kv-cache-memory-bytes", KV_CACHE,
        "--api-key", API_KEYS[0], API_KEYS[1],
        "--max-num-frames", "16", "--default-num-frames", "8",
        "--min-pixels-per-frame", "3136", "--max-pixels-per-frame", "12544",
        "--max-video-bytes", str(2 << 20), "--max-video-duration-s", "120",
        "--uploads-dir", str(uploads), "--max-concurrent-requests", "8",
        "--space-aware-candidates", "16", "--playground", "--allowed-local-media-path", str(media_root),
        *extra,
    ]  # fmt: skip
    # the server's own TMPDIR, seen as root/tmp: short, because vLLM puts its ZeroMQ sockets there and a socket
    # path over 107 bytes fails (pytest-xdist's popen-gwN/ and a long test name were enough)
    short_tmp = Path(tempfile.mkdtemp(prefix="smt-"))
    (root / "tmp").unlink(missing_ok=True)  # a restart in the same folder (a replica)
    (root / "tmp").symlink_to(short_tmp, target_is_directory=True)
    full_env = {**engine_environment(), "TMPDIR": str(short_tmp), **(env or {})}
    with log.open("w") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=full_env)
    base = f"http://127.0.0.1:{port}"
    try:
        live_server = Server(base, API_KEYS[1], log, uploads, process, media_root)
        statuses = wait_until_ready(base, process, log, timeout_s, ready_line=READY_LINE, headers=live_server.headers)
        yield live_server, statuses
    except BaseException:
        stop(process)
        shutil.rmtree(short_tmp, ignore_errors=True)
        raise
    if clean_stop:
        stop_cleanly(process, log, signum=stop_signal)
    else:
        stop(process)
    shutil.rmtree(short_tmp, ignore_errors=True)


@pytest.fixture(scope="session")
def server(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("server")
    with start_server(tiny_checkpoint, root) as (live_server, statuses):
        yield live_server, statuses, root / "tmp"


@pytest.fixture(scope="session")
def live(server) -> Server:
    return server[0]


@pytest.fixture(scope="session")
def room_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 24-frame 112x140 mp4 at 8 fps (3 s), made from the demo's synthetic room."""
    from model_plugin.reference.demo import synthetic_video

    frames = synthetic_video(frames=24, height=112, width=140, seed=3).permute(0, 2, 3, 1).numpy()
    return encode_mp4(np.ascontiguousarray(frames), tmp_path_factory.mktemp("media") / "room.mp4", fps=8)


@pytest.fixture(scope="session")
def tiny_checkpoint_v1_0(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny v1.0 (``Qwen2_5_VL_VGGTForConditionalGeneration``) checkpoint, 4.51 layout, seed 0."""
    from model_plugin.tiny import write_tiny_checkpoint

    return write_tiny_checkpoint(tmp_path_factory.mktemp("tiny-spatial-mllm-v1.0"), seed=0, arch="v1.0")

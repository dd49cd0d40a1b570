"""Every configuration mistake visible on the command line is refused before vLLM is imported: exit code 2, one
line naming what to change, no traceback. Engine flags the model refuses (model_plugin/capabilities.py), flags
for another process layout (``--headless``), and a Hugging Face id that is neither cached nor reachable.

"Before vLLM" is checked, not timed: each refusal runs ``server.runtime.cli.main`` in a fresh interpreter that then
reports
whether ``vllm`` was ever imported."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from model_plugin.capabilities import ENCODER_CUDA_GRAPHS, REASONS
from server.runtime.cli import as_vllm_spells, front_parser
from server.runtime.preflight import check_front

# main() under a probe: its stderr, then one line saying whether vLLM was imported
PROBE = """
import sys
from server.runtime.cli import main
try:
    main(sys.argv[1:])
except SystemExit as stop:
    code = stop.code
else:
    code = 0
print(f"exit={code} vllm_imported={'vllm' in sys.modules}", file=sys.stderr)
"""
EC_PRODUCER = '{"ec_connector": "ECExampleConnector", "ec_role": "ec_producer"}'
NGRAM = '{"method": "ngram", "num_speculative_tokens": 2}'
CAPABILITY_FLAGS = {
    "cudagraph_mm_encoder": (["-cc", '{"cudagraph_mm_encoder": true}'], ENCODER_CUDA_GRAPHS),
    "cudagraph_mm_encoder_dotted": (["-cc.cudagraph_mm_encoder=true"], ENCODER_CUDA_GRAPHS),
    "enable_mm_embeds": (["--enable-mm-embeds"], "--enable-mm-embeds"),
    "ec_transfer": (["--ec-transfer-config", EC_PRODUCER], "--ec-transfer-config"),
    "encoder_only": (["--mm-encoder-only"], "--mm-encoder-only"),
    "video_pruning": (["--video-pruning-rate", "0.5"], "--video-pruning-rate"),
    "lora": (["--enable-lora"], "--enable-lora"),
    "lora_underscores": (["--enable_lora"], "--enable-lora"),
    "speculative": (["--speculative-config", NGRAM], "--speculative-config"),
    "pipeline_parallel": (["--pipeline-parallel-size", "2"], "--pipeline-parallel-size"),
    "pipeline_parallel_short": (["-pp", "2"], "--pipeline-parallel-size"),
}


@pytest.fixture(scope="module")
def checkpoint_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder the front checks accept as a checkpoint (they look for config.json, nothing more)."""
    folder = tmp_path_factory.mktemp("checkpoint")
    (folder / "config.json").write_text("{}")
    return folder


def _environment(**extra: str) -> dict[str, str]:
    keep = {key: value for key, value in os.environ.items() if not key.startswith(("SPATIAL_MLLM_", "VLLM_API", "HF_"))}
    return {**keep, **extra}


def _probe(*argv: str, env: dict[str, str] | None = None) -> tuple[int, list[str], bool]:
    """(exit code, the lines main printed on stderr, whether vLLM was imported)."""
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *argv], capture_output=True, text=True, timeout=120, env=env or _environment()
    )
    lines = done.stderr.strip().splitlines()
    assert lines and lines[-1].startswith("exit="), done.stderr[-3000:]
    code, imported = lines[-1].split()
    return int(code.removeprefix("exit=")), lines[:-1], imported == "vllm_imported=True"


def _refused_before_vllm(*argv: str, env: dict[str, str] | None = None) -> str:
    code, lines, vllm_imported = _probe(*argv, env=env)
    assert code == 2, lines
    assert len(lines) == 1 and lines[0].startswith("spatial-mllm-serve: error: "), lines
    assert not vllm_imported, "refused only after vLLM was imported"
    return lines[0]


@pytest.mark.parametrize("case", sorted(CAPABILITY_FLAGS))
def test_capability_flag_is_refused_before_vllm(checkpoint_folder: Path, case: str) -> None:
    argv, named = CAPABILITY_FLAGS[case]
    line = _refused_before_vllm("--model", str(checkpoint_folder), "--port", "0", *argv)
    assert f"remove {named}: {REASONS[named]}" in line


@pytest.mark.parametrize(
    ("argv", "named"), [(["--headless"], "--headless"), (["--api-server-count", "2"], "--api-server-count")]
)
def test_other_process_layouts_are_refused_before_vllm(checkpoint_folder: Path, argv: list[str], named: str) -> None:
    assert named in _refused_before_vllm("--model", str(checkpoint_folder), "--port", "0", *argv)


def test_vllm_api_key_is_refused_before_vllm(checkpoint_folder: Path) -> None:
    env = _environment(VLLM_API_KEY="k")
    assert "VLLM_API_KEY" in _refused_before_vllm("--model", str(checkpoint_folder), "--port", "0", env=env)


def test_refused_flag_from_the_environment(checkpoint_folder: Path) -> None:
    env = _environment(SPATIAL_MLLM_ENABLE_LORA="true")
    assert "remove --enable-lora" in _refused_before_vllm("--model", str(checkpoint_folder), "--port", "0", env=env)


def test_the_console_command_refuses_in_one_line(checkpoint_folder: Path) -> None:
    """The same through ``python -m server`` as a user runs it: exit 2, one line, no traceback."""
    done = subprocess.run(
        [sys.executable, "-m", "server", "--model", str(checkpoint_folder), "--port", "0", "--enable-lora"],
        capture_output=True, text=True, timeout=120, env=_environment(),
    )  # fmt: skip
    assert done.returncode == 2, done.stderr[-3000:]
    assert done.stderr.strip().splitlines() == [
        f"spatial-mllm-serve: error: Spatial-MLLM cannot be served with these vLLM options: remove --enable-lora: "
        f"{REASONS['--enable-lora']}."
    ]


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["--no-enable-lora"],
        ["-pp", "1"],
        ["--video-pruning-rate", "0"],
        ["-cc", '{"cudagraph_mm_encoder": false}'],
        ["-cc.cudagraph_mm_encoder=false"],
        ["--api-server-count", "1"],
    ],
    ids=["plain", "no-lora", "pp1", "pruning0", "cc-false", "cc-dotted-false", "one-api-server"],
)
def test_harmless_spellings_pass(checkpoint_folder: Path, argv: list[str]) -> None:
    front, rest = front_parser({}).parse_known_args(as_vllm_spells(["--model", str(checkpoint_folder), *argv]))
    check_front(front, positional_model=False, environ={})
    assert rest == []


def test_uncached_hub_id_without_network_is_refused(tmp_path: Path) -> None:
    """No cache entry and a hub that does not answer (a closed local port): one line, no retries, no vLLM."""
    env = _environment(HF_HUB_CACHE=str(tmp_path), HF_ENDPOINT="http://127.0.0.1:1")
    line = _refused_before_vllm("--model", "Diankun/Spatial-MLLM-v1.1-Instruct-135K", "--port", "0", env=env)
    assert "--model Diankun/Spatial-MLLM-v1.1-Instruct-135K" in line
    assert str(tmp_path) in line and "HF_HUB_OFFLINE" in line and "http://127.0.0.1:1 cannot be reached" in line


def test_uncached_hub_id_offline_is_refused(tmp_path: Path) -> None:
    env = _environment(HF_HUB_CACHE=str(tmp_path), HF_HUB_OFFLINE="1")
    line = _refused_before_vllm("--model", "Diankun/Spatial-MLLM-subset-sft", "--port", "0", env=env)
    assert "--model Diankun/Spatial-MLLM-subset-sft" in line and "HF_HUB_OFFLINE is set" in line


def test_cached_hub_id_passes_without_network(tmp_path: Path) -> None:
    """A checkpoint in the Hugging Face cache needs no hub: the front check lets it through."""
    snapshot = tmp_path / "models--org--model" / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text(json.dumps({"model_type": "spatial-mllm"}))
    (tmp_path / "models--org--model" / "refs").mkdir()
    (tmp_path / "models--org--model" / "refs" / "main").write_text("0" * 40)
    code = (
        "import os; from server.runtime.preflight import check_model; check_model('org/model', os.environ); print('ok')"
    )
    env = _environment(HF_HUB_CACHE=str(tmp_path), HF_ENDPOINT="http://127.0.0.1:1")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-3000:]

"""Inherited vLLM capabilities that would bypass the spatial encoder are refused at start-up, naming the option.

The refusal is checked on the engine configuration vLLM builds from each option (no engine starts), then once
end to end: ``spatial-mllm-serve`` exits with the one-line message before binding its port or loading weights.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from processes import free_port
from vllm.engine.arg_utils import EngineArgs

from model_plugin.capabilities import UnsupportedCapability, refuse_unsupported_capabilities, unsupported_capabilities
from model_plugin.registration import register

REFUSED = {
    "cudagraph_mm_encoder": ({"compilation_config": {"cudagraph_mm_encoder": True}}, "cudagraph_mm_encoder"),
    "enable_mm_embeds": ({"enable_mm_embeds": True}, "--enable-mm-embeds"),
    "ec_transfer": (
        {"ec_transfer_config": {"ec_connector": "ECExampleConnector", "ec_role": "ec_producer"}},
        "--ec-transfer-config",
    ),
    "video_pruning": ({"video_pruning_rate": 0.5}, "--video-pruning-rate"),
    "encoder_only": ({"mm_encoder_only": True}, "--mm-encoder-only"),
    "pipeline_parallel": ({"pipeline_parallel_size": 2}, "--pipeline-parallel-size"),
    "lora": ({"enable_lora": True}, "--enable-lora"),
    "speculative": ({"speculative_config": {"method": "ngram", "num_speculative_tokens": 2}}, "--speculative-config"),
}


def engine_config(checkpoint: Path, **options):
    register()
    return EngineArgs(model=str(checkpoint), dtype="float32", max_model_len=4096, **options).create_engine_config()


def test_plain_configuration_is_accepted(tiny_checkpoint: Path) -> None:
    config = engine_config(tiny_checkpoint, mm_encoder_tp_mode="data")  # kept: the spatial encoder stays in the path
    assert unsupported_capabilities(config) == []
    refuse_unsupported_capabilities(config)


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_bypassing_option_is_refused_by_name(tiny_checkpoint: Path, name: str) -> None:
    options, flag = REFUSED[name]
    config = engine_config(tiny_checkpoint, **options)
    with pytest.raises(UnsupportedCapability, match=flag.replace("-", r"\-")) as caught:
        refuse_unsupported_capabilities(config)
    assert "remove" in str(caught.value)


def test_server_refuses_encoder_cuda_graphs_before_loading(tiny_checkpoint: Path) -> None:
    """What a user sees: one line naming the option, exit status 2, no engine started."""
    command = [
        sys.executable, "-m", "server", "--model", str(tiny_checkpoint), "--dtype", "float32",
        "--max-model-len", "4096", "--port", str(free_port()), "-cc", '{"cudagraph_mm_encoder": true}',
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stderr[-3000:]
    assert "spatial-mllm-serve: " in result.stderr and "cudagraph_mm_encoder" in result.stderr
    assert "EngineCore" not in result.stderr + result.stdout  # refused before any engine process

"""A request that sets no sampling parameter decodes as the original's scripts: their explicit ``generate``
arguments over the checkpoint's ``generation_config.json``, as vLLM's engine configuration reports them."""

from __future__ import annotations

from pathlib import Path

from vllm.engine.arg_utils import AsyncEngineArgs

from model_plugin.registration import register
from server.runtime.cli import build_parser
from server.runtime.launcher import engine_defaults
from server.runtime.settings import ServerSettings


def default_sampling(checkpoint: Path, *options: str) -> dict:
    register()
    args = build_parser(environ={}).parse_args(["--model", str(checkpoint), "--dtype", "float32", *options])
    engine_defaults(args, ServerSettings())
    return AsyncEngineArgs.from_cli_args(args).create_engine_config().model_config.get_diff_sampling_param()


def test_defaults_are_the_seed_generate_call_over_generation_config(tiny_checkpoint: Path) -> None:
    # transformers 4.51: do_sample=True, temperature=0.1, top_p=0.001, max_new_tokens=1024 given by the scripts;
    # top_k 1 and repetition_penalty 1.05 from the checkpoint's generation_config.json (Qwen2.5-VL's)
    assert default_sampling(tiny_checkpoint) == {
        "temperature": 0.1,
        "top_p": 0.001,
        "top_k": 1,
        "repetition_penalty": 1.05,
        "max_tokens": 1024,
    }


def test_operator_overrides_win_and_vllm_defaults_stay_neutral(tiny_checkpoint: Path) -> None:
    overridden = default_sampling(tiny_checkpoint, "--override-generation-config", '{"temperature": 0.7}')
    assert (overridden["temperature"], overridden["top_p"], overridden["max_tokens"]) == (0.7, 0.001, 1024)
    assert default_sampling(tiny_checkpoint, "--generation-config", "vllm") == {}

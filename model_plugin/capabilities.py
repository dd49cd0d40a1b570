"""vLLM capabilities Spatial-MLLM inherits from Qwen2.5-VL but must not use: each would let video reach the
language model without the spatial encoder, or change what the original model computes.

Our model classes call :func:`refuse_unsupported_capabilities` when they are built (so ``vllm serve`` and
``vllm.LLM`` fail at start-up), and ``spatial-mllm-serve`` calls it on its engine configuration before the
engine loads. The error names the option to remove.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if (
    TYPE_CHECKING
):  # only for hints: spatial-mllm-serve reads REASONS before vLLM is imported (server/runtime/preflight.py)
    from vllm.config import VllmConfig


class UnsupportedCapability(ValueError):
    """A vLLM option this model refuses; the message says which and why."""


ENCODER_CUDA_GRAPHS = """-cc '{"cudagraph_mm_encoder": true}'"""

# option (as written on vLLM's command line) -> why it is refused
REASONS: dict[str, str] = {
    ENCODER_CUDA_GRAPHS: "vLLM's encoder CUDA-graph path calls the Qwen ViT alone and would skip the spatial encoder",
    "--enable-mm-embeds": "precomputed image/video embeddings would reach the language model without the spatial "
    "encoder",
    "--ec-transfer-config": "a disaggregated encoder fills the encoder cache from another instance, which need not "
    "run the spatial encoder (and a consumer never runs it)",
    "--mm-encoder-only": "an encoder-only instance exists to feed --ec-transfer-config consumers",
    "--video-pruning-rate": "pruning video tokens changes what the original model sees",
    "--enable-lora": "LoRA adapters map onto Qwen's ViT and merger, not onto the spatial encoder and connector, and "
    "are not verified against the original",
    "--speculative-config": "speculative decoding is not verified with the spatial encoder (draft models read the "
    "target's multimodal embeddings)",
    "--pipeline-parallel-size": "pipeline parallelism is not verified with the spatial encoder (a 3B model fits one "
    "device)",
}


def _turned_on(config: VllmConfig) -> dict[str, bool]:
    """For each refused option, whether ``config`` uses it."""
    mm = config.model_config.get_multimodal_config()
    return {
        ENCODER_CUDA_GRAPHS: bool(config.compilation_config.cudagraph_mm_encoder),
        "--enable-mm-embeds": bool(mm.enable_mm_embeds),
        "--ec-transfer-config": config.ec_transfer_config is not None,
        "--mm-encoder-only": bool(mm.mm_encoder_only),
        "--video-pruning-rate": bool(mm.video_pruning_rate),
        "--enable-lora": config.lora_config is not None,
        "--speculative-config": config.speculative_config is not None,
        "--pipeline-parallel-size": config.parallel_config.pipeline_parallel_size > 1,
    }


def unsupported_capabilities(config: VllmConfig) -> list[str]:
    """The refused options ``config`` turns on."""
    return [option for option, on in _turned_on(config).items() if on]


def refuse_unsupported_capabilities(config: VllmConfig, model: str = "Spatial-MLLM") -> None:
    """Raise :class:`UnsupportedCapability` naming every refused option ``config`` turns on."""
    refused = unsupported_capabilities(config)
    if refused:
        raise UnsupportedCapability(refusal_message(refused, model))


def refusal_message(refused: list[str], model: str = "Spatial-MLLM") -> str:
    """One line naming each refused option (keys of :data:`REASONS`) and why."""
    lines = "; ".join(f"remove {option}: {REASONS[option]}" for option in refused)
    return f"{model} cannot be served with these vLLM options: {lines}."

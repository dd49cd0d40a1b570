"""vLLM capabilities Spatial-MLLM inherits from Qwen2.5-VL but must not use: each would let video reach the
language model without the spatial encoder, or change what the original model computes.

Our model classes call :func:`refuse_unsupported_capabilities` when they are built (so ``vllm serve`` and
``vllm.LLM`` fail at start-up), and ``spatial-mllm-serve`` calls it on its engine configuration before the
engine loads. The error names the option to remove.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from vllm.config import VllmConfig


class UnsupportedCapability(ValueError):
    """A vLLM option this model refuses; the message says which and why."""


@dataclass(frozen=True)
class Refusal:
    option: str  # as the user writes it on vLLM's command line
    reason: str
    applies: Callable[[VllmConfig], bool]


def _mm(config: VllmConfig):
    return config.model_config.get_multimodal_config()


REFUSALS: tuple[Refusal, ...] = (
    Refusal(
        """-cc '{"cudagraph_mm_encoder": true}'""",
        "vLLM's encoder CUDA-graph path calls the Qwen ViT alone and would skip the spatial encoder",
        lambda c: bool(c.compilation_config.cudagraph_mm_encoder),
    ),
    Refusal(
        "--enable-mm-embeds",
        "precomputed image/video embeddings would reach the language model without the spatial encoder",
        lambda c: bool(_mm(c).enable_mm_embeds),
    ),
    Refusal(
        "--ec-transfer-config",
        "a disaggregated encoder fills the encoder cache from another instance, which need not run the "
        "spatial encoder (and a consumer never runs it)",
        lambda c: c.ec_transfer_config is not None,
    ),
    Refusal(
        "--mm-encoder-only",
        "an encoder-only instance exists to feed --ec-transfer-config consumers",
        lambda c: bool(_mm(c).mm_encoder_only),
    ),
    Refusal(
        "--video-pruning-rate",
        "pruning video tokens changes what the original model sees",
        lambda c: bool(_mm(c).video_pruning_rate),
    ),
    Refusal(
        "--enable-lora",
        "LoRA adapters map onto Qwen's ViT and merger, not onto the spatial encoder and connector, and are not "
        "verified against the original",
        lambda c: c.lora_config is not None,
    ),
    Refusal(
        "--speculative-config",
        "speculative decoding is not verified with the spatial encoder (draft models read the target's "
        "multimodal embeddings)",
        lambda c: c.speculative_config is not None,
    ),
    Refusal(
        "--pipeline-parallel-size",
        "pipeline parallelism is not verified with the spatial encoder (a 3B model fits one device)",
        lambda c: c.parallel_config.pipeline_parallel_size > 1,
    ),
)


def unsupported_capabilities(config: VllmConfig) -> list[Refusal]:
    """The refused options ``config`` turns on."""
    return [refusal for refusal in REFUSALS if refusal.applies(config)]


def refuse_unsupported_capabilities(config: VllmConfig, model: str = "Spatial-MLLM") -> None:
    """Raise :class:`UnsupportedCapability` naming every refused option ``config`` turns on."""
    refused = unsupported_capabilities(config)
    if refused:
        lines = "; ".join(f"remove {r.option}: {r.reason}" for r in refused)
        raise UnsupportedCapability(f"{model} cannot be served with these vLLM options: {lines}.")

"""Full-size random-weight checkpoints: the published sizes, key layout and config.json, in bfloat16, streamed.

``python -m model_plugin.tiny OUT_DIR --size full [--arch v1.1|v1.0]`` (the tiny builder's options) lands here.
The network is built on the meta device (shapes only, no memory), its checkpoint keys are listed in the
public checkpoints' order, and each tensor is drawn in chunks and written straight to safetensors shards
(:mod:`model_plugin.safetensors_stream`): the builder never holds more than one chunk of values.

Sizes: Qwen2.5-VL-3B-Instruct's published config.json (its ``vision_config`` lists only what differs from
transformers' defaults, as here, so depth 32, MLP 3420, 16 heads, window 112 and full-attention blocks 7/15/23/31
come from the defaults); VGGT-1B from the original's ``VGGT()`` defaults; v1.1's ``spatial_config`` and
``connector_config`` as the original's training script writes them. Both originals build the whole ``VGGT()``,
track head included, so its keys are in both checkpoints; our port never builds the track head, so its key
names and shapes (read from the original's ``VGGT()``) are a data file, ``assets/vggt1b_track_head_shapes.json``.

Values: N(0, 0.02) for matrices, convolutions, embeddings and raw tokens, zero biases, unit norms and 0.1 layer
scales, so bfloat16 activations stay finite through 36 + 48 blocks (the tiny rules, 1/sqrt(fan_in) and norms up
to 1.5, are for parity tests and would not stay finite here).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import Qwen2_5_VLConfig

from model_plugin.config import V1_0_ARCHITECTURE, SpatialMLLMConfig
from model_plugin.init_random import is_norm, parameter_owners
from model_plugin.safetensors_stream import TensorSpec, write_sharded_checkpoint

# Qwen2.5-VL-3B-Instruct config.json (text part, flat as transformers 4.51 writes it)
FULL_TEXT: dict[str, Any] = {
    "vocab_size": 151936,
    "hidden_size": 2048,
    "intermediate_size": 11008,
    "num_hidden_layers": 36,
    "num_attention_heads": 16,
    "num_key_value_heads": 2,
    "hidden_act": "silu",
    "max_position_embeddings": 128000,
    "max_window_layers": 70,
    "rms_norm_eps": 1e-6,
    "rope_theta": 1000000.0,
    "rope_scaling": {"mrope_section": [16, 24, 24], "rope_type": "default", "type": "default"},
    "sliding_window": 32768,
    "use_sliding_window": False,
    "attention_dropout": 0.0,
    "initializer_range": 0.02,
    "use_cache": True,
    "tie_word_embeddings": True,
    "bos_token_id": 151643,
    "eos_token_id": 151645,
}
# Only what the published vision_config states; the rest are transformers' Qwen2_5_VLVisionConfig defaults.
FULL_VISION: dict[str, Any] = {
    "hidden_size": 1280,
    "in_chans": 3,
    "model_type": "qwen2_5_vl",
    "out_hidden_size": 2048,
    "spatial_patch_size": 14,
    "tokens_per_second": 2,
    "torch_dtype": "bfloat16",
}
# What the original's training script passes (src/qwenvl/train/train_qwen.py); the rest are VGGT() defaults.
FULL_SPATIAL: dict[str, Any] = {"img_size": 518, "patch_size": 14, "embed_dim": 1024}
TRACK_HEAD_SHAPES = "vggt1b_track_head_shapes.json"
WEIGHT_STD = 0.02
LAYER_SCALE = 0.1
CHUNK_ELEMENTS = 1 << 22  # 4 Mi values (16 MiB as float32) drawn at a time
SHARD_BYTES = 4 * 2**30  # Qwen2.5-VL-3B itself is published in 2 shards of ~4 GB


def full_config_dict(arch: str, special_tokens: dict[str, int]) -> dict[str, Any]:
    """config.json of a full-size checkpoint of ``arch``, in the published (transformers 4.51) layout."""
    common = {
        **FULL_TEXT,
        **special_tokens,
        "torch_dtype": "bfloat16",
        "transformers_version": "4.51.3",
        "vision_config": dict(FULL_VISION),
    }
    if arch == "v1.0":  # the public v1.0 config has no VGGT entry: the original builds VGGT() with its defaults
        return {"architectures": [V1_0_ARCHITECTURE], "model_type": "qwen2_5_vl", **common}
    return {
        "architectures": ["SpatialMLLMForConditionalGeneration"],
        "model_type": "spatial-mllm",
        **common,
        "spatial_config": dict(FULL_SPATIAL),
        "connector_config": {"connector_type": "mlp_add", "spatial_embeds_layer_idx": -1},
    }


def meta_model(config: dict[str, Any], arch: str) -> nn.Module:
    """The reference model of ``config`` on the meta device: every shape, no memory."""
    from model_plugin.reference import Qwen2_5_VL_VGGTForConditionalGeneration, SpatialMLLMForConditionalGeneration

    with torch.device("meta"):
        if arch == "v1.0":
            return Qwen2_5_VL_VGGTForConditionalGeneration(Qwen2_5_VLConfig.from_dict(config))
        return SpatialMLLMForConditionalGeneration(SpatialMLLMConfig.from_dict(config))


def _track_head_shapes() -> dict[str, list[int]]:
    text = (resources.files("model_plugin") / "assets" / TRACK_HEAD_SHAPES).read_text()
    return json.loads(text)


def vggt_prefix(arch: str) -> str:
    return "vggt." if arch == "v1.0" else "spatial_encoder.vggt_model."


class FullSizeLayout:
    """Checkpoint keys, shapes and value rules of one full-size architecture, from the meta model."""

    def __init__(self, arch: str, config: dict[str, Any], key_layout: str = "4.51") -> None:
        from model_plugin.tiny import checkpoint_key

        model = meta_model(config, arch)
        owners = parameter_owners(model)
        tied = bool(config.get("tie_word_embeddings"))
        self.specs: list[TensorSpec] = []
        self.rules: dict[str, str] = {}
        for name, param in model.state_dict(keep_vars=True).items():
            if tied and name == "lm_head.weight":  # save_pretrained drops the tied copy
                continue
            key = checkpoint_key(name, key_layout)
            self.specs.append(TensorSpec(key, tuple(param.shape)))
            self.rules[key] = _rule(*owners[name]) if name in owners else "normal"
        prefix = vggt_prefix(arch)
        for name, shape in _track_head_shapes().items():
            key = f"{prefix}track_head.{name}"
            self.specs.append(TensorSpec(key, tuple(shape)))
            self.rules[key] = _rule_by_name(name, len(shape))

    def parameter_count(self, prefix: str = "") -> int:
        return sum(s.numel() for s in self.specs if s.name.startswith(prefix))


def _rule(module: nn.Module, name: str) -> str:
    if name == "gamma":
        return "layer_scale"
    if is_norm(module):
        return "one" if name == "weight" else "zero"
    if name == "bias":
        return "zero"
    return "normal"


def _rule_by_name(name: str, ndim: int) -> str:
    """The rule for a track-head key, which has no module here: norms by name, biases zero."""
    leaf_module, _, leaf = name.rpartition(".")
    if "norm" in leaf_module.rsplit(".", 1)[-1] and ndim == 1:
        return "one" if leaf == "weight" else "zero"
    if leaf == "bias":
        return "zero"
    return "normal"


def chunk_values(spec: TensorSpec, rule: str, generator: torch.Generator) -> Iterator[torch.Tensor]:
    """The values of ``spec`` under ``rule``, at most ``CHUNK_ELEMENTS`` at a time (float32)."""
    remaining = spec.numel()
    while remaining:
        n = min(remaining, CHUNK_ELEMENTS)
        if rule == "normal":
            yield torch.randn(n, generator=generator) * WEIGHT_STD
        else:
            yield torch.full((n,), {"one": 1.0, "zero": 0.0, "layer_scale": LAYER_SCALE}[rule])
        remaining -= n


def write_full_weights(
    out_dir: Path, layout: FullSizeLayout, seed: int, max_shard_bytes: int = SHARD_BYTES
) -> list[Path]:
    """Stream every tensor of ``layout`` to bfloat16 shards in ``out_dir``; one generator per tensor."""
    order = {spec.name: i for i, spec in enumerate(layout.specs)}

    def produce(spec: TensorSpec) -> Iterator[torch.Tensor]:
        generator = torch.Generator().manual_seed(seed * 1_000_003 + order[spec.name])
        return chunk_values(spec, layout.rules[spec.name], generator)

    return write_sharded_checkpoint(out_dir, layout.specs, produce, torch.bfloat16, max_shard_bytes)

"""The spatial encoder's configuration (VGGT sizes), apart from the Qwen2.5-VL side of :mod:`model_plugin.config`.

It imports only transformers' base config class: the geometry worker of space-aware sampling builds VGGT from it
without loading ``Qwen2_5_VLConfig`` and ``AutoConfig`` (about a second of its 4-5 s import on 2 idle cores with
bytecode compiled; half its import time without), on every server start and every worker restart.
"""

from __future__ import annotations

from typing import Any

from transformers import PreTrainedConfig

V1_0_ARCHITECTURE = "Qwen2_5_VL_VGGTForConditionalGeneration"  # Diankun/Spatial-MLLM-subset-sft (model_type qwen2_5_vl)
SPATIAL_ENCODER_MODEL_TYPE = "vggt_spatial_encoder"


class VGGTSpatialEncoderConfig(PreTrainedConfig):
    """The VGGT model inside the spatial encoder; defaults are VGGT-1B (aggregator 909M parameters).

    ``depth``/``num_heads``/``patch_embed``/``dino_depth``/``dino_num_heads`` and the ``*_head_kwargs`` dicts are
    absent from the public checkpoints and exist so that tests can build reduced models of the same structure.
    """

    model_type = SPATIAL_ENCODER_MODEL_TYPE
    base_config_key = "spatial_config"

    img_size: int = 518
    patch_size: int = 14
    embed_dim: int = 1024
    depth: int = 24
    num_heads: int = 16
    patch_embed: str = "dinov2_vitl14_reg"
    dino_depth: int | None = None
    dino_num_heads: int | None = None
    camera_head_kwargs: dict | None = None
    point_head_kwargs: dict | None = None
    depth_head_kwargs: dict | None = None

    def aggregator_kwargs(self) -> dict[str, Any]:
        """Constructor arguments of the VGGT aggregator described by this config."""
        return {
            "img_size": self.img_size,
            "patch_size": self.patch_size,
            "embed_dim": self.embed_dim,
            "depth": self.depth,
            "num_heads": self.num_heads,
            "patch_embed": self.patch_embed,
            "dino_depth": self.dino_depth,
            "dino_num_heads": self.dino_num_heads,
        }


def vggt_config_from_dict(entries: dict | None) -> VGGTSpatialEncoderConfig:
    """A config.json entry describing VGGT (``spatial_config``, ``vggt_config``) -> its config; None: VGGT-1B."""
    return VGGTSpatialEncoderConfig(**{k: v for k, v in (entries or {}).items() if k != "model_type"})

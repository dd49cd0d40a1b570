"""Configuration classes for Spatial-MLLM checkpoints (``model_type: spatial-mllm``).

The public checkpoints store a Qwen2.5-VL config plus two extra entries: ``spatial_config`` (the VGGT spatial
encoder: ``img_size``, ``patch_size``, ``embed_dim``) and ``connector_config`` (``connector_type: mlp_add``,
``spatial_embeds_layer_idx``). Anything else in ``spatial_config`` is our extension for reduced test models;
its defaults are VGGT-1B's, so the public configs mean exactly what they meant to the original code.
"""

from __future__ import annotations

import contextlib
from typing import Any

from transformers import AutoConfig, PreTrainedConfig, Qwen2_5_VLConfig

SPATIAL_MLLM_MODEL_TYPE = "spatial-mllm"
V1_0_ARCHITECTURE = "Qwen2_5_VL_VGGTForConditionalGeneration"  # Diankun/Spatial-MLLM-subset-sft (model_type qwen2_5_vl)
SPATIAL_ENCODER_MODEL_TYPE = "vggt_spatial_encoder"
MLP_ADD_CONNECTOR = "mlp_add"


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


class SpatialMLLMConfig(Qwen2_5_VLConfig):
    """Qwen2.5-VL config plus the spatial encoder and the connector, as the public checkpoints store it."""

    model_type = SPATIAL_MLLM_MODEL_TYPE
    sub_configs = {**Qwen2_5_VLConfig.sub_configs, "spatial_config": VGGTSpatialEncoderConfig}  # noqa: RUF012

    spatial_config: dict | PreTrainedConfig | None = None
    connector_config: dict | None = None

    def __post_init__(self, **kwargs: Any) -> None:
        if isinstance(self.spatial_config, dict):
            self.spatial_config = VGGTSpatialEncoderConfig(**self.spatial_config)
        elif self.spatial_config is None:
            self.spatial_config = VGGTSpatialEncoderConfig()
        connector = {"connector_type": MLP_ADD_CONNECTOR, "spatial_embeds_layer_idx": -1}
        connector.update(self.connector_config or {})
        if connector["connector_type"] != MLP_ADD_CONNECTOR:
            raise ValueError(
                f"unsupported connector_type {connector['connector_type']!r}: only {MLP_ADD_CONNECTOR!r} exists"
            )
        self.connector_config = connector
        super().__post_init__(**kwargs)

    @property
    def spatial_embeds_layer_idx(self) -> int:
        """Index of the aggregator layer the connector reads (negative counts from the last)."""
        return int(self.connector_config["spatial_embeds_layer_idx"])


def v1_0_vggt_config(config: PreTrainedConfig) -> VGGTSpatialEncoderConfig:
    """The VGGT of a v1.0 checkpoint: ``VGGT()`` defaults (VGGT-1B), as the original builds it.

    The public v1.0 config has no VGGT entry; ``vggt_config`` is our extension for reduced test models.
    """
    return vggt_config_from_dict(getattr(config, "vggt_config", None))


def vggt_config_from_dict(entries: dict | None) -> VGGTSpatialEncoderConfig:
    """A config.json entry describing VGGT (``spatial_config``, ``vggt_config``) -> its config; None: VGGT-1B."""
    return VGGTSpatialEncoderConfig(**{k: v for k, v in (entries or {}).items() if k != "model_type"})


def register_with_transformers() -> None:
    """Make ``AutoConfig`` understand ``model_type: spatial-mllm``; safe to call any number of times."""
    for model_type, config_class in (
        (SPATIAL_MLLM_MODEL_TYPE, SpatialMLLMConfig),
        (SPATIAL_ENCODER_MODEL_TYPE, VGGTSpatialEncoderConfig),
    ):
        # A ValueError means another copy of the class (e.g. from a spawned worker's import) is registered.
        with contextlib.suppress(ValueError):
            AutoConfig.register(model_type, config_class, exist_ok=True)


register_with_transformers()

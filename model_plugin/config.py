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

# the spatial encoder's part, re-exported: the checkpoint's whole configuration is importable from here
from model_plugin.spatial_config import SPATIAL_ENCODER_MODEL_TYPE as SPATIAL_ENCODER_MODEL_TYPE
from model_plugin.spatial_config import V1_0_ARCHITECTURE as V1_0_ARCHITECTURE
from model_plugin.spatial_config import VGGTSpatialEncoderConfig as VGGTSpatialEncoderConfig
from model_plugin.spatial_config import vggt_config_from_dict as vggt_config_from_dict

SPATIAL_MLLM_MODEL_TYPE = "spatial-mllm"
MLP_ADD_CONNECTOR = "mlp_add"


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

"""Spatial-MLLM v1.1 (``SpatialMLLMForConditionalGeneration``) for vLLM: the aggregator layer the config names
through the MLP-add connector.

Keys ``spatial_encoder.vggt_model.*`` and ``connector.*``. Images are two identical temporal frames, the rule
Qwen itself applies, so VGGT and the connector see a 2-frame "video" (a documented extension: the original
crashes on images). Everything else (frame rebuild, fusion, weight rules) is ``vllm_base``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from model_plugin.connector import MLPAddConnector
from model_plugin.spatial_encoder import SpatialEncoder
from model_plugin.vllm_base import SpatialQwen2_5_VL, heads_of, with_qwen2_5_vl_processor


@with_qwen2_5_vl_processor
class SpatialMLLMForConditionalGeneration(SpatialQwen2_5_VL):
    """vLLM's Qwen2.5-VL with ``spatial_encoder`` (VGGT aggregator only) and ``connector``."""

    SPATIAL_PREFIXES = ("spatial_encoder", "connector")
    SKIPPED_PREFIXES = heads_of("spatial_encoder.vggt_model.")

    def build_spatial_modules(self, config) -> None:
        self.spatial_encoder = SpatialEncoder(config.spatial_config, with_heads=False)
        self.connector = MLPAddConnector.from_config(config)

    def spatial_delta(self, frames: Sequence[torch.Tensor], grid_thw: torch.Tensor, modality: str) -> torch.Tensor:
        """connector(VGGT layer) of every item; images are their two identical temporal frames."""
        spatial, patch_start_idx = self.spatial_encoder(frames, self.connector.spatial_embeds_layer_idx)
        return self.connector.spatial_delta(spatial, patch_start_idx, grid_thw)

"""Spatial-MLLM v1.0 on transformers (``Qwen2_5_VL_VGGTForConditionalGeneration``): the oracle for the v1.0 plugin.

It computes what the v1.0 original's forward computes: Qwen ViT embeddings plus
``VGGTEmbeddingMerger(aggregator's last layer)`` of the same resized frames divided by 255, videos as
``media_type="video"``, an image as one VGGT frame with ``media_type="images"``. The whole ``VGGT()`` is built
(heads included, track head aside) so a v1.0 checkpoint loads with no unexpected keys. Config: plain
``Qwen2_5_VLConfig`` (model_type ``qwen2_5_vl``); VGGT sizes from ``vggt_config`` (absent: VGGT-1B).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers import Qwen2_5_VLConfig

from model_plugin.config import v1_0_vggt_config
from model_plugin.merger_v1 import VGGTEmbeddingMerger, merge_items
from model_plugin.reference.modeling import SpatialReferenceBase
from model_plugin.spatial_encoder import build_vggt


class Qwen2_5_VL_VGGTForConditionalGeneration(SpatialReferenceBase):
    """v1.0: Qwen2.5-VL + ``vggt`` (VGGT with heads) + ``vggt_embedding_merger``, keys as the v1.0 checkpoint."""

    config_class = Qwen2_5_VLConfig
    _keys_to_ignore_on_load_unexpected = [r"^vggt\.track_head\."]  # noqa: RUF012

    def build_spatial_modules(self, config: Qwen2_5_VLConfig) -> None:
        vggt_config = v1_0_vggt_config(config)
        self.vggt = build_vggt(vggt_config, with_heads=True)
        self.vggt_embedding_merger = VGGTEmbeddingMerger.from_config(config, vggt_config)

    def spatial_delta(self, frames: Sequence[torch.Tensor], grid_thw: torch.Tensor, modality: str) -> torch.Tensor:
        """merger(last aggregator layer); an image (padded to two identical frames here) is one VGGT frame."""
        images = modality == "image"
        if images:
            frames = [f[:1] for f in frames]
        return merge_items(self.vggt.aggregator, self.vggt_embedding_merger, frames, images=images)

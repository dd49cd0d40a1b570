"""Spatial-MLLM v1.0 (``Qwen2_5_VL_VGGTForConditionalGeneration``, ``Diankun/Spatial-MLLM-subset-sft``) for vLLM:
the aggregator's last layer through ``VGGTEmbeddingMerger``.

Keys ``vggt.*`` (a whole ``VGGT()``: VGGT-1B with its heads, which serving skips) and
``vggt_embedding_merger.*``; ``model_type`` is plain ``qwen2_5_vl``. An image is one VGGT frame whose tokens the
merger duplicates (``repeat_interleave(2)``), as the original's ``images_input`` path. Everything else (frame
rebuild, fusion, weight rules) is ``vllm_base``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from model_plugin.config import v1_0_vggt_config
from model_plugin.merger_v1 import VGGTEmbeddingMerger, merge_items
from model_plugin.spatial_encoder import build_vggt
from model_plugin.vllm_base import IMAGE, SpatialQwen2_5_VL, heads_of, with_qwen2_5_vl_processor


@with_qwen2_5_vl_processor
class Qwen2_5_VL_VGGTForConditionalGeneration(SpatialQwen2_5_VL):
    """vLLM's Qwen2.5-VL with ``vggt`` (aggregator only) and ``vggt_embedding_merger``."""

    SPATIAL_PREFIXES = ("vggt", "vggt_embedding_merger")
    SKIPPED_PREFIXES = heads_of("vggt.")

    def build_spatial_modules(self, config) -> None:
        vggt_config = v1_0_vggt_config(config)
        self.vggt = build_vggt(vggt_config, with_heads=False)
        self.vggt_embedding_merger = VGGTEmbeddingMerger.from_config(config, vggt_config)

    def spatial_delta(self, frames: Sequence[torch.Tensor], grid_thw: torch.Tensor, modality: str) -> torch.Tensor:
        """merger(last aggregator layer) of every item; an image is the first of its two identical frames."""
        if modality == IMAGE:
            frames = [f[:1] for f in frames]
        return merge_items(self.vggt.aggregator, self.vggt_embedding_merger, frames, images=modality == IMAGE)

"""The spatial encoder: VGGT run on the frames Qwen's ViT sees, returning the one layer the connector reads.

Parameter names follow the original checkpoints (``spatial_encoder.vggt_model.aggregator.*``, plus the heads
when ``with_heads``). Serving builds the aggregator only; the reference model builds the heads too so that a
checkpoint in the original layout loads with no unexpected keys (the track head is never built: nothing here
uses it, and its keys are skipped on load).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import torch
from torch import nn

from model_plugin.spatial_config import VGGTSpatialEncoderConfig
from model_plugin.vggt import VGGT
from model_plugin.vggt.aggregator import Aggregator


def frames_to_unit_range(frames: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] (or float already in [0, 1]) frames -> float32 in [0, 1], as the original divides by 255."""
    if frames.dtype == torch.uint8:
        return frames.float() / 255.0
    return frames.float()


def pad_to_temporal_multiple(frames: torch.Tensor, temporal_patch_size: int) -> torch.Tensor:
    """Repeat the last frame up to a multiple of the temporal patch, exactly as Qwen pads odd-length videos.

    Qwen's ViT reads an odd-length video as if its last frame were doubled; the spatial encoder must see the
    same frames or the connector's 2-frame packing would pair different frames than the ViT did.
    """
    remainder = frames.shape[0] % temporal_patch_size
    if remainder == 0:
        return frames
    pad = frames[-1:].expand(temporal_patch_size - remainder, *frames.shape[1:])
    return torch.cat([frames, pad], dim=0)


def aggregator_layer(
    aggregator: Aggregator, videos: Sequence[torch.Tensor], layer_idx: int
) -> tuple[list[torch.Tensor], int]:
    """Per video [T, 3, H, W] in [0, 1] -> (per video [T, P, 2C] of layer ``layer_idx``, patch_start_idx).

    Videos of equal shape share one aggregator call (the frame/global attention is per sequence, so batching
    changes nothing numerically); only the requested layer is kept.
    """
    dtype = next(aggregator.parameters()).dtype
    groups: dict[tuple[int, ...], list[int]] = defaultdict(list)
    for i, video in enumerate(videos):
        groups[tuple(video.shape)].append(i)
    outputs: list[torch.Tensor | None] = [None] * len(videos)
    patch_start_idx = aggregator.patch_start_idx
    for indices in groups.values():
        batch = torch.stack([videos[i] for i in indices]).to(dtype)
        (layer,), patch_start_idx = aggregator(batch, layers=[layer_idx])
        for row, i in enumerate(indices):
            outputs[i] = layer[row]
    return [o for o in outputs if o is not None], patch_start_idx


def build_vggt(config: VGGTSpatialEncoderConfig, *, with_heads: bool = False, with_point_head: bool = False) -> VGGT:
    """VGGT of ``config``'s sizes: the aggregator, plus camera, point and depth heads when ``with_heads`` (the whole
    network, as checkpoints hold it), or the point head alone when ``with_point_head`` (space-aware sampling's
    world points)."""
    return VGGT(
        img_size=config.img_size,
        patch_size=config.patch_size,
        embed_dim=config.embed_dim,
        enable_camera=with_heads,
        enable_point=with_heads or with_point_head,
        enable_depth=with_heads,
        aggregator_kwargs=config.aggregator_kwargs(),
        camera_head_kwargs=config.camera_head_kwargs,
        point_head_kwargs=config.point_head_kwargs,
        depth_head_kwargs=config.depth_head_kwargs,
    )


class SpatialEncoder(nn.Module):
    """VGGT under the attribute name ``vggt_model``; runs same-shape videos as one batch."""

    def __init__(self, config: VGGTSpatialEncoderConfig, *, with_heads: bool) -> None:
        super().__init__()
        self.vggt_model = build_vggt(config, with_heads=with_heads)

    def forward(self, videos: Sequence[torch.Tensor], layer_idx: int) -> tuple[list[torch.Tensor], int]:
        """Per video [T, 3, H, W] in [0, 1] -> per video [T, P, 2*embed_dim] of aggregator layer ``layer_idx``."""
        return aggregator_layer(self.vggt_model.aggregator, videos, layer_idx)

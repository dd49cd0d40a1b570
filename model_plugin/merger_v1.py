"""The v1.0 connector (``Diankun/Spatial-MLLM-subset-sft``): ``VGGTEmbeddingMerger``.

Two RMSNorm + MLP stages: 2 frames x 2x2 patches of the aggregator's last layer are packed into one row,
normalised and projected to the language width, then normalised and projected again. Its output is added to
Qwen's visual embeddings row for row, so the token count and order are Qwen's.

Packing order (shared fixture ``v1_0_merger``): the columns of a row are (frame within the pair, row within
the 2x2 block, column within the block, channel), outermost first: the reverse of v1.1's connector. Images
are one VGGT frame whose tokens are duplicated in place (``repeat_interleave(2)``), filling one temporal pair.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from model_plugin.connector import RMSNorm, merge_blocks_view
from model_plugin.spatial_encoder import aggregator_layer
from model_plugin.vggt.aggregator import Aggregator

IMAGES, VIDEO = "images", "video"  # media types as the original passes them; only "images" duplicates frames


def pack_pairs_of_blocks(
    tokens: torch.Tensor, grid_h: int, grid_w: int, temporal_merge: int = 2, spatial_merge: int = 2
) -> torch.Tensor:
    """[B, F, h*w, C] patch tokens -> [B, F/t, h/s, w/s, t*s*s*C], columns ordered (tt, sh, sw, channel)."""
    x = merge_blocks_view(tokens, grid_h, grid_w, temporal_merge, spatial_merge)
    # (b, t', tt, hb, sh, wb, sw, d) -> (b, t', hb, wb, tt, sh, sw, d)
    x = x.permute(0, 1, 3, 5, 2, 4, 6, 7)
    return x.reshape(*x.shape[:4], -1)


class VGGTEmbeddingMerger(nn.Module):
    """``vgg_to_language(token_merge(packed))``; parameter names as the v1.0 checkpoint (``vggt_embedding_merger.*``).

    ``input_dim`` is the aggregator's channel count (2 x VGGT width), ``output_dim`` the language width.
    """

    def __init__(
        self,
        input_dim: int,
        output_dim: int,
        patch_size: int = 14,
        spatial_merge_size: int = 2,
        temporal_merge_size: int = 2,
    ) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.spatial_merge_size = spatial_merge_size
        self.temporal_merge_size = temporal_merge_size
        merged_dim = input_dim * spatial_merge_size**2 * temporal_merge_size
        self.token_merge_ln_q = RMSNorm(merged_dim, eps=1e-6)
        self.token_merge_mlp = nn.Sequential(
            nn.Linear(merged_dim, merged_dim), nn.GELU(), nn.Linear(merged_dim, output_dim)
        )
        self.vgg_to_language_ln_q = RMSNorm(output_dim, eps=1e-6)
        self.vgg_to_language_mlp = nn.Sequential(
            nn.Linear(output_dim, output_dim), nn.GELU(), nn.Linear(output_dim, output_dim)
        )

    @classmethod
    def from_config(cls, config, vggt_config) -> VGGTEmbeddingMerger:
        """Sizes as the original derives them: the aggregator's 2 x VGGT width in, the language width out."""
        return cls(
            input_dim=2 * vggt_config.embed_dim,
            output_dim=config.text_config.hidden_size,
            patch_size=vggt_config.patch_size,
            spatial_merge_size=config.vision_config.spatial_merge_size,
            temporal_merge_size=config.vision_config.temporal_patch_size,
        )

    def forward(
        self,
        aggregated_tokens_list: Sequence[torch.Tensor],
        patch_start_idx: int,
        images_shape: Sequence[int],
        media_type: str,
    ) -> torch.Tensor:
        """Aggregator outputs (only the last is read, [B, F, P, C]) -> [B, F'/2, H/28, W/28, output_dim].

        ``images_shape`` is the frames' (..., H, W); F' is F for videos and 2F for ``media_type == "images"``.
        """
        height, width = (int(s) for s in images_shape[-2:])
        tokens = aggregated_tokens_list[-1][:, :, patch_start_idx:]
        if media_type == IMAGES:
            tokens = tokens.repeat_interleave(self.temporal_merge_size, dim=1)
        packed = pack_pairs_of_blocks(
            tokens,
            height // self.patch_size,
            width // self.patch_size,
            self.temporal_merge_size,
            self.spatial_merge_size,
        )
        merged = self.token_merge_mlp(self.token_merge_ln_q(packed))
        return self.vgg_to_language_mlp(self.vgg_to_language_ln_q(merged))


def merge_items(
    aggregator: Aggregator, merger: VGGTEmbeddingMerger, frames: Sequence[torch.Tensor], *, images: bool
) -> torch.Tensor:
    """Per item [F, 3, H, W] frames in [0, 1] -> merger rows of all items [sum F'/2*H/28*W/28, D] in Qwen's order.

    Each item is its own VGGT sequence (batch 1 in the original); same-shape items share one aggregator call.
    """
    layers, patch_start_idx = aggregator_layer(aggregator, frames, -1)
    media_type = IMAGES if images else VIDEO
    rows = [
        merger([layer[None]], patch_start_idx, item.shape, media_type).flatten(0, -2)
        for layer, item in zip(layers, frames, strict=True)
    ]
    return torch.cat(rows)

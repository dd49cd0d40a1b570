"""The MLP-add connector: fuses one VGGT aggregator layer into Qwen2.5-VL's video tokens.

Qwen's ViT merges 2 frames x 2x2 patches into one LLM token. The connector packs the spatial features the
same way, normalises them (RMSNorm, always in float32) and adds an MLP of them to the video embeddings, so the
number and order of video tokens is unchanged and the rest of Qwen2.5-VL (M-RoPE, placeholders) is untouched.

Packing order, checked against the original element by element (see the shared connector fixture): a merged
row is (time pair, row block, column block) in Qwen's token order; its columns are
(2x2 neighbour, channel, frame within the pair) with the frame innermost.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class RMSNorm(nn.Module):
    """Qwen2's RMSNorm: normalise in float32, cast back, then scale."""

    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x32 = x.float()
        x32 = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x32.to(x.dtype)


def merge_blocks_view(
    patch_tokens: torch.Tensor, grid_h: int, grid_w: int, temporal_merge: int, spatial_merge: int
) -> torch.Tensor:
    """[..., F, h*w, D] -> [..., F/t, t, h/s, s, w/s, s, D]: the frame pairs and 2x2 blocks Qwen merges, as axes.

    Both connectors pack these axes into one row per LLM token; they differ only in the order of the columns.
    """
    *lead, frames, _, dim = patch_tokens.shape
    return patch_tokens.reshape(
        *lead,
        frames // temporal_merge,
        temporal_merge,
        grid_h // spatial_merge,
        spatial_merge,
        grid_w // spatial_merge,
        spatial_merge,
        dim,
    )


def pack_spatial_tokens(
    patch_tokens: torch.Tensor, grid_h: int, grid_w: int, temporal_merge: int = 2, spatial_merge: int = 2
) -> torch.Tensor:
    """[S, h*w, D] patch features of one video -> [S/t * h/s * w/s, s*s*D*t] rows in Qwen's token order."""
    x = merge_blocks_view(patch_tokens, grid_h, grid_w, temporal_merge, spatial_merge)
    # (t', tt, hb, sh, wb, sw, d) -> (t', hb, wb, sh, sw, d, tt)
    return x.permute(0, 2, 4, 3, 5, 6, 1).reshape(
        -1, spatial_merge * spatial_merge * patch_tokens.shape[-1] * temporal_merge
    )


def group_grid_rows(frame_counts: Sequence[int], grid_thw: torch.Tensor, temporal_merge: int) -> list[tuple[int, int]]:
    """For each video, the (h, w) of its grid rows; a video may span several rows of equal h, w."""
    rows = grid_thw.tolist()
    out: list[tuple[int, int]] = []
    row = 0
    for frames in frame_counts:
        covered = 0
        hw: tuple[int, int] | None = None
        while covered * temporal_merge < frames:
            if row >= len(rows):
                raise ValueError("grid_thw has fewer rows than the spatial features need")
            t, h, w = rows[row]
            if hw is not None and hw != (h, w):
                raise ValueError(f"grid rows of one video disagree on size: {hw} vs {(h, w)}")
            hw = (h, w)
            covered += t
            row += 1
        if covered * temporal_merge != frames or hw is None:
            raise ValueError(f"a video of {frames} frames does not match its grid rows (t sum {covered})")
        out.append(hw)
    if row != len(rows):
        raise ValueError(f"grid_thw has {len(rows)} rows but the spatial features used {row}")
    return out


class MLPAddConnector(nn.Module):
    """``fused = video_embeds + MLP(RMSNorm(packed spatial features))``; parameter names as the checkpoints."""

    def __init__(
        self,
        vggt_dim: int,
        language_dim: int,
        spatial_embeds_layer_idx: int = -1,
        temporal_merge_size: int = 2,
        spatial_merge_size: int = 2,
    ) -> None:
        super().__init__()
        self.spatial_embeds_layer_idx = spatial_embeds_layer_idx
        self.temporal_merge_size = temporal_merge_size
        self.spatial_merge_size = spatial_merge_size
        # The aggregator concatenates its frame and global block outputs: 2 * vggt_dim channels.
        merged_dim = 2 * vggt_dim * spatial_merge_size**2 * temporal_merge_size
        self.ln_q = RMSNorm(merged_dim, eps=1e-6)
        self.mlp = nn.Sequential(nn.Linear(merged_dim, merged_dim), nn.GELU(), nn.Linear(merged_dim, language_dim))

    @classmethod
    def from_config(cls, config) -> MLPAddConnector:
        """Build from a ``SpatialMLLMConfig``, deriving sizes exactly as the original factory does."""
        return cls(
            vggt_dim=config.spatial_config.embed_dim,
            language_dim=config.text_config.hidden_size,
            spatial_embeds_layer_idx=config.spatial_embeds_layer_idx,
            temporal_merge_size=config.vision_config.temporal_patch_size,
            spatial_merge_size=config.vision_config.spatial_merge_size,
        )

    def spatial_delta(
        self, spatial_tokens: Sequence[torch.Tensor], patch_start_idx: int, grid_thw: torch.Tensor
    ) -> torch.Tensor:
        """MLP(RMSNorm(packed)) for videos given as [S_i, P_i, 2*vggt_dim] aggregator outputs (one layer)."""
        sizes = group_grid_rows([t.shape[0] for t in spatial_tokens], grid_thw, self.temporal_merge_size)
        packed = [
            pack_spatial_tokens(tokens[:, patch_start_idx:], h, w, self.temporal_merge_size, self.spatial_merge_size)
            for tokens, (h, w) in zip(spatial_tokens, sizes, strict=True)
        ]
        merged = torch.cat(packed, dim=0)
        return self.mlp(self.ln_q(merged))

    def forward(
        self,
        video_embeds: torch.Tensor,
        spatial_tokens: Sequence[torch.Tensor],
        patch_start_idx: int,
        grid_thw: torch.Tensor,
    ) -> torch.Tensor:
        """Fuse; ``video_embeds`` are the Qwen ViT outputs of the same videos, concatenated in order."""
        delta = self.spatial_delta(spatial_tokens, patch_start_idx, grid_thw)
        if delta.shape != video_embeds.shape:
            raise ValueError(
                f"spatial features give {tuple(delta.shape)} but the video embeddings are "
                f"{tuple(video_embeds.shape)}: frames or grid sizes differ between the two encoders"
            )
        return video_embeds + delta.to(video_embeds.dtype)

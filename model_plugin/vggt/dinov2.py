"""DINOv2-with-registers patch embedding: the first stage of the VGGT aggregator.

Only the parts VGGT uses: conv patchify, cls token plus positional embedding (resized bicubic with antialias
to the patch grid, in float32, given a target size as VGGT's settings make DINOv2 do), register tokens (no
positional embedding), pre-norm blocks with LayerNorm eps 1e-6, and the final norm; it returns the normalised
patch tokens.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from model_plugin.vggt.layers import Block

# name -> (width, depth, heads) of the DINOv2 variants VGGT can use
DINO_VARIANTS: dict[str, tuple[int, int, int]] = {
    "dinov2_vits14_reg": (384, 12, 6),
    "dinov2_vitb14_reg": (768, 12, 12),
    "dinov2_vitl14_reg": (1024, 24, 16),
    "dinov2_vitg2_reg": (1536, 40, 24),
}


class PatchConv(nn.Module):
    """Non-overlapping conv patchify: [N, 3, H, W] -> [N, (H/p)*(W/p), dim] in row-major patch order."""

    def __init__(self, patch_size: int, dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class DinoV2PatchEmbed(nn.Module):
    """The DINOv2 ViT used as VGGT's patch embed (parameter names as in the checkpoints)."""

    def __init__(
        self,
        img_size: int,
        patch_size: int,
        dim: int,
        depth: int,
        num_heads: int,
        num_register_tokens: int = 4,
    ) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.num_register_tokens = num_register_tokens
        grid = img_size // patch_size
        self.patch_embed = PatchConv(patch_size, dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, grid * grid + 1, dim))
        self.register_tokens = nn.Parameter(torch.zeros(1, num_register_tokens, dim))
        self.mask_token = nn.Parameter(torch.zeros(1, dim))  # unused at inference, kept for the checkpoints
        self.blocks = nn.ModuleList(
            [Block(dim, num_heads, mlp_ratio=4.0, init_values=1.0, norm_eps=1e-6) for _ in range(depth)]
        )
        self.norm = nn.LayerNorm(dim, eps=1e-6)

    def interpolated_pos_embed(self, grid_h: int, grid_w: int) -> torch.Tensor:
        """[1, 1 + h*w, dim] positional embedding for an h x w patch grid (float32; cls row first)."""
        pos = self.pos_embed.float()
        cls_pos, patch_pos = pos[:, :1], pos[:, 1:]
        side = int(math.sqrt(patch_pos.shape[1]))
        if (grid_h, grid_w) != (side, side):
            grid = patch_pos.reshape(1, side, side, -1).permute(0, 3, 1, 2)
            grid = F.interpolate(grid, size=(grid_h, grid_w), mode="bicubic", antialias=True)
            patch_pos = grid.permute(0, 2, 3, 1).reshape(1, grid_h * grid_w, -1)
        return torch.cat([cls_pos, patch_pos], dim=1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Normalised images [N, 3, H, W] -> patch tokens [N, h*w, dim] (cls and registers dropped)."""
        n, _, height, width = images.shape
        x = self.patch_embed(images)
        x = torch.cat([self.cls_token.expand(n, -1, -1).to(x.dtype), x], dim=1)
        pos = self.interpolated_pos_embed(height // self.patch_size, width // self.patch_size)
        x = x + pos.to(x.dtype)
        registers = self.register_tokens.expand(n, -1, -1).to(x.dtype)
        x = torch.cat([x[:, :1], registers, x[:, 1:]], dim=1)
        for block in self.blocks:
            x = block(x)
        return self.norm(x)[:, 1 + self.num_register_tokens :]

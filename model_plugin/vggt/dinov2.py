"""DINOv2-with-registers ViT: the patch embed (first stage) of the VGGT aggregator.

Only what VGGT uses: conv patchify, cls token plus a learned positional embedding resized to the patch grid,
register tokens (which get no positional embedding), pre-norm blocks (LayerNorm eps 1e-6, LayerScale), and the
final norm. VGGT builds DINOv2 with ``interpolate_offset=0`` and ``interpolate_antialias=True``, so the 37x37
positional grid is resized bicubically *with antialias* to an explicit target size, in float32.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from model_plugin.vggt.layers import Block

# patch_embed name -> (width, depth, heads); the MLP ratio is 4 for all of them.
DINO_VARIANTS: dict[str, tuple[int, int, int]] = {
    "dinov2_vits14_reg": (384, 12, 6),
    "dinov2_vitb14_reg": (768, 12, 12),
    "dinov2_vitl14_reg": (1024, 24, 16),
    "dinov2_vitg2_reg": (1536, 40, 24),
}
DINO_NORM_EPS = 1e-6


class PatchConv(nn.Module):
    """Non-overlapping conv patchify: [N, 3, H, W] -> [N, (H/p)*(W/p), dim], patches in row-major order."""

    def __init__(self, patch_size: int, dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class DinoV2PatchEmbed(nn.Module):
    """The DINOv2 ViT used as VGGT's patch embed, parameter names as in the checkpoints."""

    def __init__(
        self,
        img_size: int,
        patch_size: int,
        dim: int,
        depth: int,
        num_heads: int,
        num_register_tokens: int = 4,
        mlp_ratio: float = 4.0,
    ) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.num_register_tokens = num_register_tokens
        grid = img_size // patch_size
        self.patch_embed = PatchConv(patch_size, dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, grid * grid + 1, dim))
        self.register_tokens = nn.Parameter(torch.zeros(1, num_register_tokens, dim))
        self.mask_token = nn.Parameter(torch.zeros(1, dim), requires_grad=False)  # unused; in the checkpoints
        self.blocks = nn.ModuleList(
            [Block(dim, num_heads, mlp_ratio, init_values=1.0, norm_eps=DINO_NORM_EPS) for _ in range(depth)]
        )
        self.norm = nn.LayerNorm(dim, eps=DINO_NORM_EPS)

    def interpolated_pos_embed(self, grid_h: int, grid_w: int) -> torch.Tensor:
        """[1, 1 + h*w, dim] float32 positional embedding for an h x w patch grid, cls row first."""
        pos = self.pos_embed.float()
        cls_pos, patch_pos = pos[:, :1], pos[:, 1:]
        side = math.isqrt(patch_pos.shape[1])
        if (grid_h, grid_w) != (side, side):
            square = patch_pos.reshape(1, side, side, -1).permute(0, 3, 1, 2)
            resized = F.interpolate(square, size=(grid_h, grid_w), mode="bicubic", antialias=True)
            patch_pos = resized.permute(0, 2, 3, 1).reshape(1, grid_h * grid_w, -1)
        return torch.cat([cls_pos, patch_pos], dim=1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Normalised images [N, 3, H, W] -> normalised patch tokens [N, h*w, dim] (cls and registers dropped)."""
        n, _, height, width = images.shape
        x = self.patch_embed(images)
        # No casts: under autocast (float32 weights, bf16 patch embedding) ``cat`` promotes the stream to float32
        # as the original's does; with uniform weights and input it changes nothing (model_plugin.dtype_rules).
        x = torch.cat([self.cls_token.expand(n, -1, -1), x], dim=1)
        x = x + self.interpolated_pos_embed(height // self.patch_size, width // self.patch_size).to(x.dtype)
        x = torch.cat([x[:, :1], self.register_tokens.expand(n, -1, -1), x[:, 1:]], dim=1)
        for block in self.blocks:
            x = block(x)
        return self.norm(x)[:, 1 + self.num_register_tokens :]

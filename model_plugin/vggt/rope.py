"""2D rotary position embedding of the aggregator: y rotates the first half of each head, x the second.

Each half uses the rotate-half layout with frequencies 1 / base^(2j / half_dim). Special tokens sit at
position (0, 0) and patches at (row + 1, column + 1); global attention reuses the per-frame positions.
"""

from __future__ import annotations

import torch


def patch_positions(grid_h: int, grid_w: int, num_special: int, device: torch.device) -> torch.Tensor:
    """[num_special + h*w, 2] (y, x) positions of one frame's tokens."""
    ys, xs = torch.meshgrid(
        torch.arange(1, grid_h + 1, device=device), torch.arange(1, grid_w + 1, device=device), indexing="ij"
    )
    patches = torch.stack([ys.reshape(-1), xs.reshape(-1)], dim=-1)
    special = torch.zeros(num_special, 2, dtype=patches.dtype, device=device)
    return torch.cat([special, patches], dim=0)


def _rotate_half(x: torch.Tensor, angles: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    cos = torch.cat([angles.cos(), angles.cos()], dim=-1).to(x.dtype)
    sin = torch.cat([angles.sin(), angles.sin()], dim=-1).to(x.dtype)
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return x * cos + rotated * sin


def apply_rope_2d(x: torch.Tensor, positions: torch.Tensor, base: float) -> torch.Tensor:
    """Rotate ``x`` [B, heads, N, D] by ``positions`` [N, 2] (shared by the batch) or [B, N, 2]."""
    axis_dim = x.shape[-1] // 2
    inv_freq = 1.0 / base ** (torch.arange(0, axis_dim, 2, device=x.device, dtype=torch.float32) / axis_dim)
    pos = positions.float()
    pos = pos[None, None] if pos.dim() == 2 else pos[:, None]
    out = [
        _rotate_half(x[..., axis * axis_dim : (axis + 1) * axis_dim], pos[..., axis, None] * inv_freq)
        for axis in range(2)
    ]
    return torch.cat(out, dim=-1)

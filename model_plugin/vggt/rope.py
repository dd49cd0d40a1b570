"""2D rotary position embedding of the aggregator.

Within each attention head the first half of the channels is rotated by the token's row (y) and the second
half by its column (x). Each half uses the rotate-half layout with frequencies 1 / base^(2j / half_dim).
Patches sit at (row + 1, column + 1) and the special tokens (camera, registers) at (0, 0); global attention
reuses the per-frame positions, so there is no temporal position.

The cos/sin tables depend only on the patch grid, the head width, the device and the dtype, so they are built
once and cached: every frame block and every global block of a forward pass share them.
"""

from __future__ import annotations

import torch


def token_positions(grid_h: int, grid_w: int, num_special: int, device: torch.device | None = None) -> torch.Tensor:
    """[num_special + h*w, 2] integer (y, x) positions of one frame's tokens, patches in row-major order."""
    ys = torch.arange(1, grid_h + 1, device=device).repeat_interleave(grid_w)
    xs = torch.arange(1, grid_w + 1, device=device).repeat(grid_h)
    special = torch.zeros(num_special, 2, dtype=ys.dtype, device=device)
    return torch.cat([special, torch.stack([ys, xs], dim=-1)], dim=0)


class RopeTables:
    """cos/sin multipliers [N, head_dim] for N tokens; applied to q and k shaped [..., N, head_dim]."""

    def __init__(self, cos: torch.Tensor, sin: torch.Tensor) -> None:
        self.cos = cos
        self.sin = sin

    def repeat(self, times: int) -> RopeTables:
        """Tables for ``times`` frames laid end to end (global attention over a whole sequence)."""
        return RopeTables(self.cos.repeat(times, 1), self.sin.repeat(times, 1))

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        """Rotate x [..., N, head_dim]: per axis half, out = x*cos + (-x_hi, x_lo)*sin."""
        quarter = x.shape[-1] // 4
        parts = x.unflatten(-1, (2, 2, quarter))  # (axis, half, channel)
        rotated = torch.stack([-parts[..., 1, :], parts[..., 0, :]], dim=-2).flatten(-3)
        return x * self.cos + rotated * self.sin


class Rope2D:
    """Builds (and caches) the RoPE tables of a patch grid. Holds no parameters, so no state-dict entries."""

    max_cached = 32  # distinct (grid, device, dtype) entries kept; a serving process sees many frame sizes

    def __init__(self, base: float = 100.0) -> None:
        self.base = float(base)
        self._cache: dict[tuple, RopeTables] = {}

    def tables(
        self, grid_h: int, grid_w: int, num_special: int, head_dim: int, device: torch.device, dtype: torch.dtype
    ) -> RopeTables:
        """Tables for one frame of ``num_special`` special tokens followed by an h x w patch grid.

        Angles are computed in float32 and cast to ``dtype`` before cos/sin, as the original does; in bf16 this
        rounding is part of the behaviour the pretrained weights see.
        """
        key = (grid_h, grid_w, num_special, head_dim, str(device), dtype)
        if key not in self._cache:
            if head_dim % 4:
                raise ValueError(f"2D RoPE needs a head width divisible by 4, got {head_dim}")
            axis_dim = head_dim // 2
            inv_freq = 1.0 / self.base ** (torch.arange(0, axis_dim, 2, device=device).float() / axis_dim)
            pos = token_positions(grid_h, grid_w, num_special, device).float()
            angles = (pos[:, :, None] * inv_freq).to(dtype)  # [N, axis, axis_dim / 2]
            angles = torch.cat([angles, angles], dim=-1).flatten(1)  # [N, head_dim]: (axis, half, channel)
            if len(self._cache) >= self.max_cached:
                self._cache.pop(next(iter(self._cache)))
            self._cache[key] = RopeTables(angles.cos(), angles.sin())
        return self._cache[key]

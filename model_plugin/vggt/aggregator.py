"""The VGGT aggregator: DINOv2 patch tokens, then alternating frame and global attention.

Per frame the tokens are [camera, 4 registers, patches]; the first frame of each sequence uses the first of the
two learned camera/register versions, every other frame the second. Layer i's output joins the frame block's
and the global block's outputs on the channel axis ([B, S, P, 2*dim]).

Callers name the layers they need (``layers=[-1]`` for the connector, the point head's four for sampling):
the loop stops after the deepest one and only those outputs are kept, never the [depth x S x P x 2*dim] stack
(at full size and 16 frames of 476x644 that stack alone is ~4.6 GB in bf16).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from model_plugin.vggt.dinov2 import DINO_VARIANTS, DinoV2PatchEmbed
from model_plugin.vggt.layers import Block
from model_plugin.vggt.rope import patch_positions

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class Aggregator(nn.Module):
    """VGGT's aggregator; defaults are VGGT-1B's (DINOv2-L/14 with registers, 24 + 24 blocks of width 1024)."""

    def __init__(
        self,
        img_size: int = 518,
        patch_size: int = 14,
        embed_dim: int = 1024,
        depth: int = 24,
        num_heads: int = 16,
        mlp_ratio: float = 4.0,
        num_register_tokens: int = 4,
        qkv_bias: bool = True,
        proj_bias: bool = True,
        ffn_bias: bool = True,
        patch_embed: str = "dinov2_vitl14_reg",
        aa_order: Sequence[str] = ("frame", "global"),
        aa_block_size: int = 1,
        qk_norm: bool = True,
        rope_freq: float = 100,
        init_values: float = 0.01,
        dino_depth: int | None = None,
        dino_num_heads: int | None = None,
    ) -> None:
        super().__init__()
        if tuple(aa_order) != ("frame", "global") or aa_block_size != 1:
            raise ValueError("only aa_order ('frame', 'global') with aa_block_size 1 (VGGT-1B's) is implemented")
        if patch_embed not in DINO_VARIANTS:
            raise ValueError(f"unknown patch_embed {patch_embed!r}; known: {sorted(DINO_VARIANTS)}")
        _, variant_depth, variant_heads = DINO_VARIANTS[patch_embed]
        self.patch_size = patch_size
        self.depth = depth
        self.num_special_tokens = 1 + num_register_tokens
        self.patch_embed = DinoV2PatchEmbed(
            img_size,
            patch_size,
            embed_dim,
            depth=dino_depth if dino_depth is not None else variant_depth,
            num_heads=dino_num_heads if dino_num_heads is not None else variant_heads,
            num_register_tokens=num_register_tokens,
        )

        def block() -> Block:
            return Block(
                embed_dim,
                num_heads,
                mlp_ratio,
                qkv_bias=qkv_bias,
                proj_bias=proj_bias,
                ffn_bias=ffn_bias,
                init_values=init_values,
                qk_norm=qk_norm,
                rope_freq=rope_freq,
            )

        self.frame_blocks = nn.ModuleList([block() for _ in range(depth)])
        self.global_blocks = nn.ModuleList([block() for _ in range(depth)])
        self.camera_token = nn.Parameter(torch.zeros(1, 2, 1, embed_dim))
        self.register_token = nn.Parameter(torch.zeros(1, 2, num_register_tokens, embed_dim))

    @staticmethod
    def normalize(images: torch.Tensor) -> torch.Tensor:
        """ImageNet normalisation with the constants cast to the image dtype, as the original does.

        Built per call rather than kept as buffers: loaders that materialise a model from a checkpoint on the
        meta device (transformers 5, vLLM) never fill buffers the checkpoint lacks.
        """
        mean = torch.tensor(IMAGENET_MEAN, dtype=images.dtype, device=images.device).view(3, 1, 1)
        std = torch.tensor(IMAGENET_STD, dtype=images.dtype, device=images.device).view(3, 1, 1)
        return (images - mean) / std

    @property
    def patch_start_idx(self) -> int:
        return self.num_special_tokens

    def _special_tokens(self, param: torch.Tensor, batch: int, frames: int) -> torch.Tensor:
        """[1, 2, n, dim] -> [batch*frames, n, dim]: version 0 for each sequence's first frame, 1 after."""
        first = param[:, :1].expand(batch, 1, *param.shape[2:])
        rest = param[:, 1:].expand(batch, frames - 1, *param.shape[2:])
        return torch.cat([first, rest], dim=1).reshape(batch * frames, *param.shape[2:])

    def resolve_layers(self, layers: Sequence[int] | None) -> list[int]:
        """Non-negative indices of the requested layers (all of them for ``None``)."""
        if layers is None:
            return list(range(self.depth))
        resolved = [i + self.depth if i < 0 else i for i in layers]
        if any(not 0 <= i < self.depth for i in resolved):
            raise IndexError(f"layers {list(layers)} out of range for depth {self.depth}")
        return resolved

    def forward(self, images: torch.Tensor, layers: Sequence[int] | None = None) -> tuple[list[torch.Tensor], int]:
        """images [B, S, 3, H, W] in [0, 1] (H, W multiples of the patch size) -> (outputs, patch_start_idx).

        ``outputs`` holds, in the order asked, the [B, S, P, 2*dim] output of each requested layer.
        """
        batch, frames, _, height, width = images.shape
        if height % self.patch_size or width % self.patch_size:
            raise ValueError(f"image size {height}x{width} is not a multiple of {self.patch_size}")
        wanted = self.resolve_layers(layers)
        last = max(wanted)
        patches = self.patch_embed(self.normalize(images).reshape(batch * frames, 3, height, width))
        tokens = torch.cat(
            [
                self._special_tokens(self.camera_token, batch, frames).to(patches.dtype),
                self._special_tokens(self.register_token, batch, frames).to(patches.dtype),
                patches,
            ],
            dim=1,
        )
        per_frame, dim = tokens.shape[1], tokens.shape[2]
        pos = patch_positions(
            height // self.patch_size, width // self.patch_size, self.num_special_tokens, images.device
        )
        global_pos = pos.repeat(frames, 1)
        kept: dict[int, torch.Tensor] = {}
        for i in range(last + 1):
            tokens = self.frame_blocks[i](tokens.reshape(batch * frames, per_frame, dim), pos)
            frame_out = tokens.reshape(batch, frames, per_frame, dim) if i in wanted else None
            tokens = self.global_blocks[i](tokens.reshape(batch, frames * per_frame, dim), global_pos)
            if frame_out is not None:
                kept[i] = torch.cat([frame_out, tokens.reshape(batch, frames, per_frame, dim)], dim=-1)
        return [kept[i] for i in wanted], self.patch_start_idx

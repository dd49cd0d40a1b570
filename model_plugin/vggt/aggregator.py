"""The VGGT aggregator: DINOv2 patch tokens, then alternating frame-wise and global attention.

Per frame the tokens are [camera, registers, patches]. The camera and register parameters hold two versions:
the first frame of every sequence uses version 0, every other frame version 1. Frame blocks attend within a
frame ([B*S, P, C]); global blocks attend across all frames of a sequence ([B, S*P, C]). Layer i's output joins
frame block i's and global block i's outputs on the channel axis: [B, S, P, 2*C].

Callers name the layers they need (``layers=[-1]`` for the connector, the point head's four for sampling): the
loop stops after the deepest one and keeps only those outputs, never the [depth, B, S, P, 2C] stack (at full
size, 16 frames of 476x644 that stack alone is ~2.5 GB in bf16: 24 x 16 x 1569 x 2048 x 2 bytes).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from model_plugin.vggt.dinov2 import DINO_VARIANTS, DinoV2PatchEmbed
from model_plugin.vggt.layers import Block
from model_plugin.vggt.rope import Rope2D, RopeTables

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def expand_special_tokens(param: torch.Tensor, batch: int, frames: int) -> torch.Tensor:
    """[1, 2, n, C] -> [batch*frames, n, C]: version 0 for each sequence's first frame, version 1 after it."""
    first = param[:, :1].expand(batch, 1, *param.shape[2:])
    rest = param[:, 1:].expand(batch, frames - 1, *param.shape[2:])
    return torch.cat([first, rest], dim=1).reshape(batch * frames, *param.shape[2:])


class Aggregator(nn.Module):
    """VGGT's aggregator; defaults are VGGT-1B's (DINOv2-L/14 with registers, 24 + 24 blocks of width 1024).

    ``dino_depth`` / ``dino_num_heads`` override the DINO variant's block count and heads (reduced test models);
    the DINO width always equals ``embed_dim``.
    """

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
        if patch_embed not in DINO_VARIANTS:
            raise ValueError(f"unknown patch_embed {patch_embed!r}; known: {sorted(DINO_VARIANTS)}")
        if sorted(aa_order) != ["frame", "global"]:
            raise ValueError(f"aa_order must order 'frame' and 'global' once each, got {list(aa_order)}")
        if aa_block_size < 1 or depth % aa_block_size:
            raise ValueError(f"depth {depth} is not a multiple of aa_block_size {aa_block_size}")
        _, variant_depth, variant_heads = DINO_VARIANTS[patch_embed]
        self.patch_size = patch_size
        self.depth = depth
        self.aa_order = tuple(aa_order)
        self.aa_block_size = aa_block_size
        self.head_dim = embed_dim // num_heads
        self.patch_start_idx = 1 + num_register_tokens
        self.rope = Rope2D(rope_freq) if rope_freq > 0 else None
        self.patch_embed = DinoV2PatchEmbed(
            img_size,
            patch_size,
            embed_dim,
            depth=variant_depth if dino_depth is None else dino_depth,
            num_heads=variant_heads if dino_num_heads is None else dino_num_heads,
            num_register_tokens=num_register_tokens,
        )

        def blocks() -> nn.ModuleList:
            return nn.ModuleList(
                Block(
                    embed_dim,
                    num_heads,
                    mlp_ratio,
                    qkv_bias=qkv_bias,
                    proj_bias=proj_bias,
                    ffn_bias=ffn_bias,
                    init_values=init_values,
                    qk_norm=qk_norm,
                )
                for _ in range(depth)
            )

        self.frame_blocks = blocks()
        self.global_blocks = blocks()
        self.camera_token = nn.Parameter(torch.zeros(1, 2, 1, embed_dim))
        self.register_token = nn.Parameter(torch.zeros(1, 2, num_register_tokens, embed_dim))

    @staticmethod
    def normalize(images: torch.Tensor) -> torch.Tensor:
        """ImageNet normalisation, constants cast to the image dtype.

        Built per call rather than kept as buffers: loaders that materialise a model from a checkpoint on the
        meta device (transformers 5, vLLM) never fill buffers the checkpoint lacks.
        """
        shape = (3, 1, 1)
        mean = torch.tensor(IMAGENET_MEAN, dtype=images.dtype, device=images.device).view(shape)
        std = torch.tensor(IMAGENET_STD, dtype=images.dtype, device=images.device).view(shape)
        return (images - mean) / std

    def resolve_layers(self, layers: Sequence[int] | None) -> list[int]:
        """Non-negative indices of the requested layers, in the order asked (all layers for ``None``)."""
        if layers is None:
            return list(range(self.depth))
        resolved = [int(i) + self.depth if int(i) < 0 else int(i) for i in layers]
        if not resolved or any(not 0 <= i < self.depth for i in resolved):
            raise IndexError(f"layers {list(layers)} out of range for depth {self.depth}")
        return resolved

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """images [B, S, 3, H, W] in [0, 1] -> the first block's input [B*S, P, C]: special tokens + patches."""
        batch, frames, channels, height, width = images.shape
        if channels != 3:
            raise ValueError(f"expected 3 input channels, got {channels}")
        if height % self.patch_size or width % self.patch_size:
            raise ValueError(f"image size {height}x{width} is not a multiple of {self.patch_size}")
        patches = self.patch_embed(self.normalize(images).reshape(batch * frames, 3, height, width))
        special = [expand_special_tokens(p, batch, frames) for p in (self.camera_token, self.register_token)]
        return torch.cat([*special, patches], dim=1)  # promotes as the original's cat (model_plugin.dtype_rules)

    def _rope(self, images: torch.Tensor, dtype: torch.dtype) -> RopeTables | None:
        if self.rope is None:
            return None
        height, width = images.shape[-2:]
        grid = (height // self.patch_size, width // self.patch_size)
        return self.rope.tables(*grid, self.patch_start_idx, self.head_dim, images.device, dtype)

    def forward(self, images: torch.Tensor, layers: Sequence[int] | None = None) -> tuple[list[torch.Tensor], int]:
        """images [B, S, 3, H, W] in [0, 1], H and W multiples of the patch size -> (outputs, patch_start_idx).

        ``outputs`` holds the [B, S, P, 2*C] output of each requested layer in the order asked (every layer for
        ``None``, as the original). Negative indices count from the last layer.
        """
        batch, frames = images.shape[:2]
        wanted = self.resolve_layers(layers)
        wanted_set = set(wanted)
        tokens = self.embed(images)
        per_frame, dim = tokens.shape[1:]
        frame_rope = self._rope(images, tokens.dtype)
        global_rope = frame_rope.repeat(frames) if frame_rope is not None else None
        kept: dict[int, torch.Tensor] = {}
        last_group = max(wanted) // self.aa_block_size
        for group in range(last_group + 1):
            outs: dict[str, dict[int, torch.Tensor]] = {"frame": {}, "global": {}}
            for kind in self.aa_order:
                for idx in range(group * self.aa_block_size, (group + 1) * self.aa_block_size):
                    if kind == "frame":
                        tokens = self.frame_blocks[idx](tokens.reshape(batch * frames, per_frame, dim), frame_rope)
                    else:
                        tokens = self.global_blocks[idx](tokens.reshape(batch, frames * per_frame, dim), global_rope)
                    if idx in wanted_set:
                        outs[kind][idx] = tokens.reshape(batch, frames, per_frame, dim)
            for idx, frame_out in outs["frame"].items():
                kept[idx] = torch.cat([frame_out, outs["global"][idx]], dim=-1)
        return [kept[i] for i in wanted], self.patch_start_idx

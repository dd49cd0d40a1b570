"""VGGT's DPT head: dense per-pixel predictions (world points or depth, plus a confidence) from four layers.

The patch tokens of four aggregator layers are normalised, projected (1x1), given a uv positional embedding and
brought to four scales (x4, x2, x1, x0.5 of the patch grid); RefineNet-style blocks fuse them coarse to fine
and the result is upsampled to the input resolution.

Numerics that matter (the pretrained weights were trained with them):
- every residual conv unit starts with an in-place ReLU, which also rewrites its skip input, so the unit
  computes conv2(relu(conv1(relu(x)))) + relu(x), not the textbook x + ...;
- every resize is bilinear with align_corners=True;
- the uv embedding spans the *image's* aspect ratio, not the feature map's.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def uv_position_embedding(
    height: int, width: int, aspect_ratio: float, channels: int, like: torch.Tensor
) -> torch.Tensor:
    """[1, channels, height, width] sin/cos embedding of a centred uv grid, in ``like``'s dtype and device.

    u spans ±(a/√(a²+1))·(w−1)/w and v spans ±(1/√(a²+1))·(h−1)/h for the image aspect ratio a = W/H. The first
    half of the channels encodes u, the second v; each half is [sin(p·ω), cos(p·ω)], ω_k = 100^(−k/(C/4)),
    computed in float64 and rounded to float32 as the original does.
    """
    diag = (aspect_ratio**2 + 1) ** 0.5
    span_u = aspect_ratio / diag * (width - 1) / width
    span_v = 1 / diag * (height - 1) / height
    u = torch.linspace(-span_u, span_u, width, device=like.device)
    v = torch.linspace(-span_v, span_v, height, device=like.device)
    quarter = channels // 4
    omega = 100.0 ** -(torch.arange(quarter, dtype=torch.float64, device=like.device) / quarter)

    def sincos(p: torch.Tensor) -> torch.Tensor:  # [n] -> [n, C/2]
        angles = p.double()[:, None] * omega
        return torch.cat([angles.sin(), angles.cos()], dim=-1).float()

    emb_u = sincos(u)[None, :, :].expand(height, width, -1)
    emb_v = sincos(v)[:, None, :].expand(height, width, -1)
    embed = torch.cat([emb_u, emb_v], dim=-1)  # [h, w, C]
    return embed.permute(2, 0, 1)[None].to(like.dtype)


class ResidualConvUnit(nn.Module):
    """conv2(relu(conv1(relu(x)))) + relu(x): the original's in-place ReLU also rewrites the skip input."""

    def __init__(self, features: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(features, features, 3, padding=1)
        self.conv2 = nn.Conv2d(features, features, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(x)
        return self.conv2(F.relu(self.conv1(x))) + x


class FeatureFusionBlock(nn.Module):
    """Adds a refined skip input (when it has one), refines, resizes (to ``size`` or x2), projects (1x1)."""

    def __init__(self, features: int, has_skip: bool = True) -> None:
        super().__init__()
        if has_skip:
            self.resConfUnit1 = ResidualConvUnit(features)
        self.resConfUnit2 = ResidualConvUnit(features)
        self.out_conv = nn.Conv2d(features, features, 1)

    def forward(
        self, x: torch.Tensor, skip: torch.Tensor | None = None, size: Sequence[int] | None = None
    ) -> torch.Tensor:
        if skip is not None:
            x = x + self.resConfUnit1(skip)
        x = self.resConfUnit2(x)
        resize = {"scale_factor": 2} if size is None else {"size": tuple(size)}
        x = F.interpolate(x, mode="bilinear", align_corners=True, **resize)
        return self.out_conv(x)


def activate_points(x: torch.Tensor, activation: str) -> torch.Tensor:
    """The point/depth activation of the original's ``activate_head`` on [..., C] (channel-last)."""
    if activation == "inv_log":
        return torch.sign(x) * torch.expm1(x.abs())
    if activation == "exp":
        return torch.exp(x)
    if activation == "linear":
        return x
    if activation == "relu":
        return F.relu(x)
    if activation == "sigmoid":
        return torch.sigmoid(x)
    if activation == "norm":
        return x / x.norm(dim=-1, keepdim=True)
    if activation == "norm_exp":
        norm = x.norm(dim=-1, keepdim=True).clamp(min=1e-8)
        return x / norm * torch.expm1(norm)
    if activation == "xy_inv_log":
        xy, z = x.split([x.shape[-1] - 1, 1], dim=-1)
        z = torch.sign(z) * torch.expm1(z.abs())
        return torch.cat([xy * z, z], dim=-1)
    raise ValueError(f"unknown activation {activation!r}")


def activate_confidence(x: torch.Tensor, activation: str) -> torch.Tensor:
    if activation == "expp1":
        return 1 + torch.exp(x)
    if activation == "expp0":
        return torch.exp(x)
    if activation == "sigmoid":
        return torch.sigmoid(x)
    raise ValueError(f"unknown confidence activation {activation!r}")


class DPTHead(nn.Module):
    """Dense head with the checkpoints' parameter names (``norm``, ``projects``, ``resize_layers``, ``scratch.*``).

    Only the layers in ``intermediate_layer_idx`` are read. To avoid running and holding the whole aggregator
    stack, ask the aggregator for ``head.required_layers`` and pass the result with ``layers_are_selected=True``.
    """

    def __init__(
        self,
        dim_in: int,
        patch_size: int = 14,
        output_dim: int = 4,
        activation: str = "inv_log",
        conf_activation: str = "expp1",
        features: int = 256,
        out_channels: Sequence[int] = (256, 512, 1024, 1024),
        intermediate_layer_idx: Sequence[int] = (4, 11, 17, 23),
        pos_embed: bool = True,
        feature_only: bool = False,
        down_ratio: int = 1,
    ) -> None:
        super().__init__()
        if feature_only:
            raise ValueError("feature_only DPT heads (the track head's) are not implemented")
        if len(out_channels) != 4 or len(intermediate_layer_idx) != 4:
            raise ValueError("a DPT head reads exactly four layers into four branches")
        self.patch_size = patch_size
        self.activation = activation
        self.conf_activation = conf_activation
        self.intermediate_layer_idx = [int(i) for i in intermediate_layer_idx]
        self.pos_embed = pos_embed
        self.down_ratio = down_ratio
        c = list(out_channels)
        self.norm = nn.LayerNorm(dim_in)
        self.projects = nn.ModuleList(nn.Conv2d(dim_in, ch, 1) for ch in c)
        self.resize_layers = nn.ModuleList(
            [
                nn.ConvTranspose2d(c[0], c[0], kernel_size=4, stride=4),
                nn.ConvTranspose2d(c[1], c[1], kernel_size=2, stride=2),
                nn.Identity(),
                nn.Conv2d(c[3], c[3], kernel_size=3, stride=2, padding=1),
            ]
        )
        self.scratch = nn.Module()
        for i, ch in enumerate(c, start=1):
            setattr(self.scratch, f"layer{i}_rn", nn.Conv2d(ch, features, 3, padding=1, bias=False))
        self.scratch.refinenet1 = FeatureFusionBlock(features)
        self.scratch.refinenet2 = FeatureFusionBlock(features)
        self.scratch.refinenet3 = FeatureFusionBlock(features)
        self.scratch.refinenet4 = FeatureFusionBlock(features, has_skip=False)
        self.scratch.output_conv1 = nn.Conv2d(features, features // 2, 3, padding=1)
        self.scratch.output_conv2 = nn.Sequential(
            nn.Conv2d(features // 2, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, output_dim, 1)
        )

    @property
    def required_layers(self) -> list[int]:
        """The aggregator layers this head reads, one per branch (``aggregator(images, layers=...)``)."""
        return list(self.intermediate_layer_idx)

    def _add_pos(self, x: torch.Tensor, aspect_ratio: float) -> torch.Tensor:
        if not self.pos_embed:
            return x
        return x + 0.1 * uv_position_embedding(x.shape[-2], x.shape[-1], aspect_ratio, x.shape[1], x)

    def _forward_frames(
        self, layers: Sequence[torch.Tensor], patch_start_idx: int, grid_hw: tuple[int, int], aspect_ratio: float
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Tokens [N, P, C] of the four layers -> (predictions [N, H, W, D-1], confidence [N, H, W])."""
        grid_h, grid_w = grid_hw
        branches = []
        for k, tokens in enumerate(layers):
            x = self.norm(tokens[:, patch_start_idx:])
            x = x.transpose(1, 2).reshape(x.shape[0], -1, grid_h, grid_w)
            x = self._add_pos(self.projects[k](x), aspect_ratio)
            branches.append(self.resize_layers[k](x))
        s = self.scratch
        l1, l2, l3, l4 = (getattr(s, f"layer{i}_rn")(x) for i, x in enumerate(branches, start=1))
        del branches
        out = s.refinenet4(l4, size=l3.shape[2:])
        out = s.refinenet3(out, l3, size=l2.shape[2:])
        out = s.refinenet2(out, l2, size=l1.shape[2:])
        out = s.output_conv1(s.refinenet1(out, l1))
        size = (int(grid_h * self.patch_size / self.down_ratio), int(grid_w * self.patch_size / self.down_ratio))
        out = self._add_pos(F.interpolate(out, size=size, mode="bilinear", align_corners=True), aspect_ratio)
        out = s.output_conv2(out).permute(0, 2, 3, 1)
        return activate_points(out[..., :-1], self.activation), activate_confidence(out[..., -1], self.conf_activation)

    def forward(
        self,
        aggregated_tokens_list: Sequence[torch.Tensor],
        images: torch.Tensor,
        patch_start_idx: int,
        frames_chunk_size: int | None = 8,
        layers_are_selected: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """-> (predictions [B, S, H, W, output_dim-1], confidence [B, S, H, W]).

        ``aggregated_tokens_list`` is the aggregator's full per-layer list, or, with ``layers_are_selected``,
        exactly the layers named by ``required_layers`` in that order. ``images`` [B, S, 3, H, W] only gives
        the size. At most ``frames_chunk_size`` frames (None or 0: all) go through the head at once, to bound
        memory; chunking changes no value, as frames are independent here.
        """
        batch, frames, _, height, width = images.shape
        if layers_are_selected:
            if len(aggregated_tokens_list) != len(self.intermediate_layer_idx):
                raise ValueError(f"expected the {len(self.intermediate_layer_idx)} layers {self.required_layers}")
            layers = list(aggregated_tokens_list)
        else:
            layers = [aggregated_tokens_list[i] for i in self.intermediate_layer_idx]
        flat = [t.reshape(batch * frames, *t.shape[2:]) for t in layers]  # a view: no copy of the tokens
        grid_hw = (height // self.patch_size, width // self.patch_size)
        total = batch * frames
        step = total if not frames_chunk_size else min(frames_chunk_size, total)
        chunks = [
            self._forward_frames([t[i : i + step] for t in flat], patch_start_idx, grid_hw, width / height)
            for i in range(0, total, step)
        ]
        preds = torch.cat([p for p, _ in chunks]) if len(chunks) > 1 else chunks[0][0]
        conf = torch.cat([c for _, c in chunks]) if len(chunks) > 1 else chunks[0][1]
        return preds.reshape(batch, frames, *preds.shape[1:]), conf.reshape(batch, frames, *conf.shape[1:])

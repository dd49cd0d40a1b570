"""VGGT's DPT head: dense per-pixel predictions (world points or depth, plus confidence) from four layers.

Four aggregator layers are projected, given a uv positional embedding, brought to four scales (x4, x2, x1,
x0.5), fused coarse to fine by RefineNet-style blocks and upsampled to the input resolution.

Numerics that matter (pretrained weights were trained with them): every residual conv unit applies an
in-place ReLU to its input, so its skip connection adds relu(x), not x; all resizes are bilinear with
align_corners=True; the uv embedding uses the image's aspect ratio, not the feature map's.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def uv_position_embedding(
    height: int, width: int, aspect_ratio: float, channels: int, like: torch.Tensor
) -> torch.Tensor:
    """[1, channels, height, width] sin/cos embedding of a centred uv grid scaled by the image aspect ratio.

    The first half of the channels encodes u, the second v; each half is [sin(p*w), cos(p*w)] with
    w_k = 1 / 100^(k / (channels/4)), computed in float64 and cast to float32.
    """
    diag = (aspect_ratio**2 + 1) ** 0.5
    span_u, span_v = aspect_ratio / diag, 1 / diag
    u = torch.linspace(-span_u * (width - 1) / width, span_u * (width - 1) / width, width, device=like.device)
    v = torch.linspace(-span_v * (height - 1) / height, span_v * (height - 1) / height, height, device=like.device)
    vv, uu = torch.meshgrid(v, u, indexing="ij")
    quarter = channels // 4
    omega = 1.0 / 100.0 ** (torch.arange(quarter, dtype=torch.float64, device=like.device) / quarter)

    def sincos(p: torch.Tensor) -> torch.Tensor:
        angles = p.reshape(-1).double()[:, None] * omega
        return torch.cat([angles.sin(), angles.cos()], dim=1).float()

    embed = torch.cat([sincos(uu), sincos(vv)], dim=-1).reshape(height, width, channels)
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
    """Adds a refined skip input (when given), refines, resizes (to ``size`` or x2) and projects (1x1)."""

    def __init__(self, features: int, has_skip: bool = True) -> None:
        super().__init__()
        if has_skip:
            self.resConfUnit1 = ResidualConvUnit(features)
        self.resConfUnit2 = ResidualConvUnit(features)
        self.out_conv = nn.Conv2d(features, features, 1)

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None = None, size=None) -> torch.Tensor:
        if skip is not None:
            x = x + self.resConfUnit1(skip)
        x = self.resConfUnit2(x)
        if size is None:
            x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True)
        else:
            x = F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=True)
        return self.out_conv(x)


def _activate_points(x: torch.Tensor, activation: str) -> torch.Tensor:
    if activation == "inv_log":
        return torch.sign(x) * torch.expm1(x.abs())
    if activation == "exp":
        return torch.exp(x)
    if activation == "linear":
        return x
    raise ValueError(f"unknown activation {activation!r}")


def _activate_confidence(x: torch.Tensor, activation: str) -> torch.Tensor:
    if activation == "expp1":
        return 1 + torch.exp(x)
    if activation == "expp0":
        return torch.exp(x)
    if activation == "sigmoid":
        return torch.sigmoid(x)
    raise ValueError(f"unknown confidence activation {activation!r}")


class DPTHead(nn.Module):
    """Parameter names as in the checkpoints (``projects``, ``resize_layers``, ``scratch.*``)."""

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
        self.patch_size = patch_size
        self.activation = activation
        self.conf_activation = conf_activation
        self.intermediate_layer_idx = list(intermediate_layer_idx)
        self.pos_embed = pos_embed
        self.down_ratio = down_ratio
        c = list(out_channels)
        self.norm = nn.LayerNorm(dim_in)
        self.projects = nn.ModuleList([nn.Conv2d(dim_in, ch, 1) for ch in c])
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

    def _with_pos(self, x: torch.Tensor, aspect_ratio: float) -> torch.Tensor:
        if not self.pos_embed:
            return x
        return x + 0.1 * uv_position_embedding(x.shape[-2], x.shape[-1], aspect_ratio, x.shape[1], x)

    def _forward_chunk(
        self, layers: Sequence[torch.Tensor], height: int, width: int, patch_start_idx: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        frames = layers[0].shape[0]
        grid_h, grid_w = height // self.patch_size, width // self.patch_size
        aspect = width / height
        scales = []
        for k, tokens in enumerate(layers):
            x = self.norm(tokens[:, patch_start_idx:])
            x = x.transpose(1, 2).reshape(frames, -1, grid_h, grid_w)
            x = self._with_pos(self.projects[k](x), aspect)
            scales.append(self.resize_layers[k](x))
        s = self.scratch
        l1, l2, l3, l4 = (getattr(s, f"layer{i}_rn")(x) for i, x in enumerate(scales, start=1))
        out = s.refinenet4(l4, size=l3.shape[2:])
        out = s.refinenet3(out, l3, size=l2.shape[2:])
        out = s.refinenet2(out, l2, size=l1.shape[2:])
        out = s.output_conv1(s.refinenet1(out, l1))
        size = (grid_h * self.patch_size // self.down_ratio, grid_w * self.patch_size // self.down_ratio)
        out = self._with_pos(F.interpolate(out, size=size, mode="bilinear", align_corners=True), aspect)
        out = s.output_conv2(out).permute(0, 2, 3, 1)
        return _activate_points(out[..., :-1], self.activation), _activate_confidence(
            out[..., -1], self.conf_activation
        )

    def forward(
        self,
        aggregated_tokens_list: Sequence[torch.Tensor],
        images: torch.Tensor,
        patch_start_idx: int,
        frames_chunk_size: int = 8,
        layers_are_selected: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """-> (predictions [B, S, H, W, output_dim-1], confidence [B, S, H, W]).

        ``aggregated_tokens_list`` is the full per-layer list, or with ``layers_are_selected`` exactly the four
        layers named by ``intermediate_layer_idx`` in that order (what ``Aggregator(layers=...)`` returns).
        Frames are processed ``frames_chunk_size`` at a time to bound memory; chunking changes no value.
        """
        batch, frames, _, height, width = images.shape
        layers = (
            list(aggregated_tokens_list)
            if layers_are_selected
            else [aggregated_tokens_list[i] for i in self.intermediate_layer_idx]
        )
        flat = [t.reshape(batch * frames, *t.shape[2:]) for t in layers]
        step = max(1, frames_chunk_size) * batch if frames_chunk_size else batch * frames
        preds, confs = [], []
        for start in range(0, batch * frames, step):
            pred, conf = self._forward_chunk([t[start : start + step] for t in flat], height, width, patch_start_idx)
            preds.append(pred)
            confs.append(conf)
        pred = torch.cat(preds).reshape(batch, frames, *preds[0].shape[1:])
        conf = torch.cat(confs).reshape(batch, frames, *confs[0].shape[1:])
        return pred, conf

"""VGGT: the aggregator plus the heads this project uses (camera, point, depth). The track head is never built;
callers skip its checkpoint keys (``track_head.*``)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from model_plugin.dtype_rules import aggregator_autocast, heads_full_precision
from model_plugin.vggt.aggregator import Aggregator
from model_plugin.vggt.camera_head import CameraHead
from model_plugin.vggt.dpt_head import DPTHead


class VGGT(nn.Module):
    """Attribute names as in the checkpoints (``aggregator``, ``camera_head``, ``point_head``, ``depth_head``).

    Defaults are VGGT-1B's. The ``*_kwargs`` dicts override constructor arguments (reduced test models); they
    win over the defaults set here, including the heads' ``dim_in``, output size and activations.
    """

    def __init__(
        self,
        img_size: int = 518,
        patch_size: int = 14,
        embed_dim: int = 1024,
        enable_camera: bool = True,
        enable_point: bool = True,
        enable_depth: bool = True,
        aggregator_kwargs: dict[str, Any] | None = None,
        camera_head_kwargs: dict[str, Any] | None = None,
        point_head_kwargs: dict[str, Any] | None = None,
        depth_head_kwargs: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        agg = {"img_size": img_size, "patch_size": patch_size, "embed_dim": embed_dim, **(aggregator_kwargs or {})}
        self.aggregator = Aggregator(**agg)
        dim_in = 2 * agg["embed_dim"]
        dense = {"dim_in": dim_in, "patch_size": agg["patch_size"], "conf_activation": "expp1"}
        self.camera_head = CameraHead(**{"dim_in": dim_in, **(camera_head_kwargs or {})}) if enable_camera else None
        self.point_head = (
            DPTHead(**{**dense, "output_dim": 4, "activation": "inv_log", **(point_head_kwargs or {})})
            if enable_point
            else None
        )
        self.depth_head = (
            DPTHead(**{**dense, "output_dim": 2, "activation": "exp", **(depth_head_kwargs or {})})
            if enable_depth
            else None
        )

    def _dense_heads(self) -> list[tuple[str, DPTHead]]:
        heads = [("world_points", self.point_head), ("depth", self.depth_head)]
        return [(name, head) for name, head in heads if head is not None]

    def forward(self, images: torch.Tensor) -> dict[str, Any]:
        """images [B, S, 3, H, W] (or [S, 3, H, W]) in [0, 1] -> every enabled head's predictions.

        Keys as the original: ``pose_enc`` and ``pose_enc_list`` [B, S, 9], ``world_points`` [B, S, H, W, 3]
        and ``world_points_conf``, ``depth`` [B, S, H, W, 1] and ``depth_conf``, plus ``images`` outside
        training. Only the aggregator layers the heads read are kept (not the whole stack); values are the same.
        """
        if images.dim() == 4:
            images = images[None]
        depth = self.aggregator.depth
        needed: set[int] = {depth - 1} if self.camera_head is not None else set()
        for _, head in self._dense_heads():
            needed.update(self.aggregator.resolve_layers(head.required_layers))
        out: dict[str, Any] = {}
        if needed:
            order = sorted(needed)
            tokens, start = self.aggregator(images, layers=order)
            by_layer = dict(zip(order, tokens, strict=True))
            if self.camera_head is not None:
                out["pose_enc_list"] = self.camera_head([by_layer[depth - 1]])
                out["pose_enc"] = out["pose_enc_list"][-1]
            for name, head in self._dense_heads():
                layers = [by_layer[i] for i in self.aggregator.resolve_layers(head.required_layers)]
                out[name], out[f"{name}_conf"] = head(layers, images, start, layers_are_selected=True)
        if not self.training:
            out["images"] = images
        return out

    def predict_world_points(
        self, images: torch.Tensor, frames_chunk_size: int = 8, autocast_dtype: torch.dtype = torch.float32
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """World points [B, S, H, W, 3] and confidence [B, S, H, W] from [B, S, 3, H, W] (or [S, 3, H, W])
        images in [0, 1], running only the aggregator layers the point head reads (all space-aware frame
        sampling needs).

        ``autocast_dtype`` other than float32 runs the aggregator under autocast and the point head with autocast
        off, as the original's space-aware sampling (``model_plugin.dtype_rules``)."""
        if self.point_head is None:
            raise RuntimeError("this VGGT was built without its point head")
        if images.dim() == 4:
            images = images[None]
        with aggregator_autocast(images.device.type, autocast_dtype):
            tokens, start = self.aggregator(images, layers=self.point_head.required_layers)
        with heads_full_precision(images.device.type):
            return self.point_head(tokens, images, start, frames_chunk_size, layers_are_selected=True)

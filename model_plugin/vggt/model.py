"""VGGT: the aggregator plus the heads this project uses (camera, point, depth; the track head is never built)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from model_plugin.vggt.aggregator import Aggregator
from model_plugin.vggt.camera_head import CameraHead
from model_plugin.vggt.dpt_head import DPTHead


class VGGT(nn.Module):
    """Attribute names as in the checkpoints (``aggregator``, ``camera_head``, ``point_head``, ``depth_head``).

    Defaults are VGGT-1B's; the ``*_kwargs`` dicts override constructor arguments for reduced test models.
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
        agg = {
            "img_size": img_size,
            "patch_size": patch_size,
            "embed_dim": embed_dim,
            **(aggregator_kwargs or {}),
        }
        self.aggregator = Aggregator(**agg)
        dim_in = 2 * agg["embed_dim"]
        self.camera_head = CameraHead(dim_in=dim_in, **(camera_head_kwargs or {})) if enable_camera else None
        self.point_head = (
            DPTHead(
                dim_in,
                patch_size,
                output_dim=4,
                activation="inv_log",
                conf_activation="expp1",
                **(point_head_kwargs or {}),
            )
            if enable_point
            else None
        )
        self.depth_head = (
            DPTHead(
                dim_in,
                patch_size,
                output_dim=2,
                activation="exp",
                conf_activation="expp1",
                **(depth_head_kwargs or {}),
            )
            if enable_depth
            else None
        )

    def forward(self, images: torch.Tensor) -> dict[str, Any]:
        """images [B, S, 3, H, W] (or [S, 3, H, W]) in [0, 1] -> every enabled head's predictions."""
        if images.dim() == 4:
            images = images[None]
        tokens, start = self.aggregator(images)
        out: dict[str, Any] = {}
        if self.camera_head is not None:
            out["pose_enc_list"] = self.camera_head(tokens)
            out["pose_enc"] = out["pose_enc_list"][-1]
        if self.point_head is not None:
            out["world_points"], out["world_points_conf"] = self.point_head(tokens, images, start)
        if self.depth_head is not None:
            out["depth"], out["depth_conf"] = self.depth_head(tokens, images, start)
        return out

    def predict_world_points(
        self, images: torch.Tensor, frames_chunk_size: int = 8
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """World points [B, S, H, W, 3] and confidence [B, S, H, W], running only the layers the point head
        reads (space-aware sampling needs nothing else)."""
        if self.point_head is None:
            raise RuntimeError("this VGGT was built without its point head")
        tokens, start = self.aggregator(images, layers=self.point_head.intermediate_layer_idx)
        return self.point_head(tokens, images, start, frames_chunk_size, layers_are_selected=True)

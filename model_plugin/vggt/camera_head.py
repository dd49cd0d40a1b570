"""VGGT's camera head: iteratively refines a 9-D pose encoding per frame from the last layer's camera token.

Each of the ``num_iterations`` steps embeds the running (pre-activation) estimate, turns it into an adaLN
shift/scale/gate that modulates the fixed normalised camera tokens, runs a small transformer trunk across the
frames of a sequence and adds a predicted delta. The encoding is [T (3), quaternion xyzw (4), fov_h, fov_w].
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from model_plugin.vggt.layers import Block, Mlp

POSE_ENCODING_DIM = 9


def _activate(x: torch.Tensor, kind: str) -> torch.Tensor:
    if kind == "linear":
        return x
    if kind == "relu":
        return F.relu(x)
    if kind == "exp":
        return torch.exp(x)
    if kind == "inv_log":
        return torch.sign(x) * torch.expm1(x.abs())
    raise ValueError(f"unknown activation {kind!r}")


class CameraHead(nn.Module):
    """Parameter names as in the checkpoints (``trunk``, ``poseLN_modulation``, ``pose_branch``, ...)."""

    def __init__(
        self,
        dim_in: int = 2048,
        trunk_depth: int = 4,
        pose_encoding_type: str = "absT_quaR_FoV",
        num_heads: int = 16,
        mlp_ratio: float = 4,
        init_values: float = 0.01,
        trans_act: str = "linear",
        quat_act: str = "linear",
        fl_act: str = "relu",
    ) -> None:
        super().__init__()
        if pose_encoding_type != "absT_quaR_FoV":
            raise ValueError(f"unsupported pose encoding {pose_encoding_type!r}")
        self.activations = (trans_act, quat_act, fl_act)
        self.trunk = nn.Sequential(
            *[Block(dim_in, num_heads, mlp_ratio, init_values=init_values) for _ in range(trunk_depth)]
        )
        self.token_norm = nn.LayerNorm(dim_in)
        self.trunk_norm = nn.LayerNorm(dim_in)
        self.empty_pose_tokens = nn.Parameter(torch.zeros(1, 1, POSE_ENCODING_DIM))
        self.embed_pose = nn.Linear(POSE_ENCODING_DIM, dim_in)
        self.poseLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim_in, 3 * dim_in))
        self.adaln_norm = nn.LayerNorm(dim_in, elementwise_affine=False, eps=1e-6)
        self.pose_branch = Mlp(dim_in, dim_in // 2, POSE_ENCODING_DIM)

    def activate(self, raw: torch.Tensor) -> torch.Tensor:
        trans, quat, fov = self.activations
        return torch.cat(
            [_activate(raw[..., :3], trans), _activate(raw[..., 3:7], quat), _activate(raw[..., 7:], fov)],
            dim=-1,
        )

    def forward(self, aggregated_tokens_list: Sequence[torch.Tensor], num_iterations: int = 4) -> list[torch.Tensor]:
        """Activated [B, S, 9] encoding after each iteration (the last is the estimate).

        Only the last entry of ``aggregated_tokens_list`` is read (its camera token, index 0), so a caller may
        pass just ``aggregator(images, layers=[-1])[0]``.
        """
        pose_tokens = self.token_norm(aggregated_tokens_list[-1][:, :, 0])
        batch, frames, _ = pose_tokens.shape
        normed = self.adaln_norm(pose_tokens)
        raw: torch.Tensor | None = None  # running sum of the deltas, before activation
        outputs = []
        for _ in range(num_iterations):
            # The original stops gradients through the previous estimate (no effect at inference).
            source = self.empty_pose_tokens.expand(batch, frames, -1) if raw is None else raw.detach()
            shift, scale, gate = self.poseLN_modulation(self.embed_pose(source)).chunk(3, dim=-1)
            x = gate * (normed * (1 + scale) + shift) + pose_tokens
            delta = self.pose_branch(self.trunk_norm(self.trunk(x)))
            raw = delta if raw is None else raw.detach() + delta
            outputs.append(self.activate(raw))
        return outputs

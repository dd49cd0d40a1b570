"""Conversions between VGGT's ``absT_quaR_FoV`` pose encoding and camera matrices (OpenCV, world-to-camera)."""

from __future__ import annotations

import torch


def quaternion_to_matrix(quaternion: torch.Tensor) -> torch.Tensor:
    """(x, y, z, w) quaternions, scalar last, not necessarily unit -> [..., 3, 3] rotation matrices."""
    x, y, z, w = quaternion.unbind(-1)
    s = 2.0 / (quaternion * quaternion).sum(-1)
    rows = [
        1 - s * (y * y + z * z), s * (x * y - z * w), s * (x * z + y * w),
        s * (x * y + z * w), 1 - s * (x * x + z * z), s * (y * z - x * w),
        s * (x * z - y * w), s * (y * z + x * w), 1 - s * (x * x + y * y),
    ]  # fmt: skip
    return torch.stack(rows, dim=-1).reshape(*quaternion.shape[:-1], 3, 3)


def matrix_to_quaternion(matrix: torch.Tensor) -> torch.Tensor:
    """[..., 3, 3] rotations -> unit (x, y, z, w) quaternions with w >= 0."""
    m = matrix
    m00, m11, m22 = m[..., 0, 0], m[..., 1, 1], m[..., 2, 2]
    trace = m00 + m11 + m22
    # Four candidate (w, x, y, z) solutions up to scale; the one with the largest leading term is best conditioned.
    a, b, c = m[..., 2, 1] - m[..., 1, 2], m[..., 0, 2] - m[..., 2, 0], m[..., 1, 0] - m[..., 0, 1]
    d, e, f = m[..., 1, 0] + m[..., 0, 1], m[..., 0, 2] + m[..., 2, 0], m[..., 2, 1] + m[..., 1, 2]
    candidates = torch.stack(
        [
            torch.stack([1 + trace, a, b, c], dim=-1),
            torch.stack([a, 1 + 2 * m00 - trace, d, e], dim=-1),
            torch.stack([b, d, 1 + 2 * m11 - trace, f], dim=-1),
            torch.stack([c, e, f, 1 + 2 * m22 - trace], dim=-1),
        ],
        dim=-2,
    )
    best = torch.stack([trace, m00, m11, m22], dim=-1).argmax(-1)
    wxyz = torch.gather(candidates, -2, best[..., None, None].expand(*best.shape, 1, 4)).squeeze(-2)
    wxyz = wxyz / wxyz.norm(dim=-1, keepdim=True)
    wxyz = torch.where(wxyz[..., :1] < 0, -wxyz, wxyz)
    return torch.cat([wxyz[..., 1:], wxyz[..., :1]], dim=-1)


def pose_encoding_to_extri_intri(
    pose_encoding: torch.Tensor,
    image_size_hw: tuple[int, int],
    pose_encoding_type: str = "absT_quaR_FoV",
    build_intrinsics: bool = True,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """[..., 9] encodings -> extrinsics [..., 3, 4] ([R | T], world-to-camera, OpenCV axes) and intrinsics
    [..., 3, 3] (principal point at the image centre, focal lengths from the fields of view), or ``None`` for
    the intrinsics when ``build_intrinsics`` is false.

    The intrinsics are float32 (float64 for float64 input), whatever the encoding's dtype, as in the original:
    focal lengths of hundreds of pixels do not survive bf16.
    """
    if pose_encoding_type != "absT_quaR_FoV":
        raise ValueError(f"unsupported pose encoding {pose_encoding_type!r}")
    height, width = image_size_hw
    rotation = quaternion_to_matrix(pose_encoding[..., 3:7])
    extrinsics = torch.cat([rotation, pose_encoding[..., :3, None]], dim=-1)
    if not build_intrinsics:
        return extrinsics, None
    dtype = torch.promote_types(pose_encoding.dtype, torch.float32)
    fov = pose_encoding[..., 7:9].to(dtype)
    fy = (height / 2.0) / torch.tan(fov[..., 0] / 2.0)
    fx = (width / 2.0) / torch.tan(fov[..., 1] / 2.0)
    intrinsics = torch.zeros(*pose_encoding.shape[:-1], 3, 3, dtype=dtype, device=pose_encoding.device)
    intrinsics[..., 0, 0] = fx
    intrinsics[..., 1, 1] = fy
    intrinsics[..., 0, 2] = width / 2.0
    intrinsics[..., 1, 2] = height / 2.0
    intrinsics[..., 2, 2] = 1.0
    return extrinsics, intrinsics


def extri_intri_to_pose_encoding(
    extrinsics: torch.Tensor,
    intrinsics: torch.Tensor,
    image_size_hw: tuple[int, int],
    pose_encoding_type: str = "absT_quaR_FoV",
) -> torch.Tensor:
    """Inverse of ``pose_encoding_to_extri_intri``: [..., 3, 4] and [..., 3, 3] -> [..., 9].

    The quaternion comes out unit-norm with w >= 0. Unlike the original, which always returns float32, the
    result keeps the input dtype (so a float64 round trip stays exact).
    """
    if pose_encoding_type != "absT_quaR_FoV":
        raise ValueError(f"unsupported pose encoding {pose_encoding_type!r}")
    height, width = image_size_hw
    quaternion = matrix_to_quaternion(extrinsics[..., :3, :3])
    fov_h = 2 * torch.atan((height / 2.0) / intrinsics[..., 1, 1])
    fov_w = 2 * torch.atan((width / 2.0) / intrinsics[..., 0, 0])
    return torch.cat([extrinsics[..., :3, 3], quaternion, fov_h[..., None], fov_w[..., None]], dim=-1)


# The original's names for the quaternion helpers.
quat_to_mat = quaternion_to_matrix
mat_to_quat = matrix_to_quaternion

"""The camera and point heads reproduce the original (shared fixture B), from stored tokens and end to end."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import fixture_path
from safetensors.torch import load_file
from test_vggt_aggregator import (
    assert_close,
    fixture_aggregator,
    fixture_aggregator_kwargs,
    fixture_aggregator_weights,
    load_case,
)

from model_plugin.vggt import VGGT, CameraHead, DPTHead, extri_intri_to_pose_encoding, pose_encoding_to_extri_intri
from model_plugin.vggt.pose_encoding import matrix_to_quaternion, quaternion_to_matrix

HW = (42, 546)


def _config() -> dict:
    return json.loads(fixture_path("vggt_heads", "config.json").read_text())


def _weights(name: str) -> dict[str, torch.Tensor]:
    return {k: v.float() for k, v in load_file(fixture_path("vggt_heads", f"{name}.safetensors")).items()}


def _heads() -> tuple[CameraHead, DPTHead]:
    config = _config()
    camera = CameraHead(**config["camera_head_kwargs"]).eval()
    point = DPTHead(**config["point_head_kwargs"]).eval()
    camera.load_state_dict(_weights("camera_head"), strict=True)
    point.load_state_dict(_weights("point_head"), strict=True)
    return camera, point


@pytest.fixture(scope="module")
def heads() -> tuple[CameraHead, DPTHead]:
    return _heads()


@pytest.fixture(scope="module")
def expected() -> dict[str, torch.Tensor]:
    return load_file(fixture_path("vggt_heads", "case_b2s2_42x546.safetensors"))


@pytest.fixture(scope="module")
def inputs() -> dict[str, torch.Tensor]:
    return load_case("case_b2s2_42x546")


def _check_all(poses, points, conf, expected) -> None:
    """Every fixture-B output, at the README's suggested tolerances."""
    assert len(poses) == 4
    for i, pose in enumerate(poses):
        assert_close(f"pose_enc_list.{i}", pose, expected[f"pose_enc_list.{i}"], atol=1e-5)
    assert_close("pose_enc", poses[-1], expected["pose_enc"], atol=1e-5)
    assert_close("world_points", points, expected["world_points"], atol=1e-4, rtol=1e-4)
    assert_close("world_points_conf", conf, expected["world_points_conf"], atol=1e-4, rtol=1e-4)
    extrinsic, intrinsic = pose_encoding_to_extri_intri(poses[-1], HW)
    assert_close("extrinsic", extrinsic, expected["extrinsic"], atol=1e-5)
    assert intrinsic.dtype == torch.float32
    assert_close("intrinsic", intrinsic, expected["intrinsic"], atol=0.0, rtol=1e-5)


@pytest.mark.parametrize("chunk", [8, 1, None])
def test_heads_on_stored_tokens(heads, inputs, expected, chunk) -> None:
    camera, point = heads
    tokens = [inputs["aggregated_tokens.0"], inputs["aggregated_tokens.1"]]
    images = inputs["images_u8"].float() / 255
    with torch.no_grad():
        poses = camera(tokens)
        points, conf = point(tokens, images, patch_start_idx=5, frames_chunk_size=chunk)
    _check_all(poses, points, conf, expected)


def test_heads_end_to_end_from_images(heads, inputs, expected) -> None:
    camera, point = heads
    images = inputs["images_u8"].float() / 255
    with torch.no_grad():
        tokens, start = fixture_aggregator()(images)
        poses = camera(tokens)
        points, conf = point(tokens, images, patch_start_idx=start)
    _check_all(poses, points, conf, expected)


def _fixture_vggt() -> VGGT:
    """A whole VGGT of fixture A's aggregator and fixture B's heads, loaded under the full-checkpoint prefixes."""
    config = _config()
    model = VGGT(
        embed_dim=384,
        enable_depth=False,
        aggregator_kwargs=fixture_aggregator_kwargs(),
        camera_head_kwargs=config["camera_head_kwargs"],
        point_head_kwargs=config["point_head_kwargs"],
    ).eval()
    state = {f"aggregator.{k}": v for k, v in fixture_aggregator_weights().items()}
    for part in ("camera_head", "point_head"):
        state.update({f"{part}.{k}": v for k, v in _weights(part).items()})
    model.load_state_dict(state, strict=True)
    return model


def test_vggt_forward_and_predict_world_points(inputs, expected) -> None:
    model = _fixture_vggt()
    images = inputs["images_u8"].float() / 255
    with torch.no_grad():
        out = model(images)
        points, conf = model.predict_world_points(images, frames_chunk_size=1)
    assert set(out) == {"pose_enc", "pose_enc_list", "world_points", "world_points_conf", "images"}
    _check_all(out["pose_enc_list"], out["world_points"], out["world_points_conf"], expected)
    assert_close("predict_world_points", points, expected["world_points"], atol=1e-4, rtol=1e-4)
    assert_close("predict_world_points conf", conf, expected["world_points_conf"], atol=1e-4, rtol=1e-4)


def test_point_head_on_selected_layers_equals_full_list(heads, inputs) -> None:
    """Feeding only the point head's layers (as space-aware sampling does) changes nothing."""
    _, point = heads
    tokens = [inputs["aggregated_tokens.0"], inputs["aggregated_tokens.1"]]
    selected = [tokens[i] for i in point.required_layers]
    images = inputs["images_u8"].float() / 255
    with torch.no_grad():
        full = point(tokens, images, 5)
        picked = point(selected, images, 5, layers_are_selected=True)
    assert point.required_layers == [0, 0, 1, 1]
    assert torch.equal(full[0], picked[0]) and torch.equal(full[1], picked[1])
    with pytest.raises(ValueError):
        point(tokens, images, 5, layers_are_selected=True)


def test_heads_run_in_bfloat16(heads, inputs, expected) -> None:
    """bf16 heads on bf16 tokens: outputs stay bf16 and close (the uv embedding must not promote to fp32)."""
    camera, point = (h.to(torch.bfloat16) for h in _heads())
    tokens = [inputs[f"aggregated_tokens.{i}"].to(torch.bfloat16) for i in range(2)]
    images = (inputs["images_u8"].float() / 255).to(torch.bfloat16)
    with torch.no_grad():
        pose = camera(tokens)[-1]
        points, conf = point(tokens, images, 5)
    assert pose.dtype == points.dtype == conf.dtype == torch.bfloat16
    for name, got in (("pose_enc", pose), ("world_points", points), ("world_points_conf", conf)):
        want = expected[name]
        rel = ((got.float() - want).norm() / want.norm()).item()
        assert rel < 0.05, f"{name}: relative error {rel:.3g}"
    _, intrinsic = pose_encoding_to_extri_intri(pose, HW)
    assert intrinsic.dtype == torch.float32


def test_pose_encoding_round_trip(expected) -> None:
    pose = expected["pose_enc"].double()
    quat = pose[..., 3:7] / pose[..., 3:7].norm(dim=-1, keepdim=True)
    quat = torch.where(quat[..., 3:] < 0, -quat, quat)
    pose = torch.cat([pose[..., :3], quat, pose[..., 7:]], dim=-1)
    extrinsic, intrinsic = pose_encoding_to_extri_intri(pose, HW)
    back = extri_intri_to_pose_encoding(extrinsic, intrinsic, HW)
    assert torch.allclose(back, pose, atol=1e-9)


def test_quaternion_helpers_cover_every_branch() -> None:
    """matrix_to_quaternion picks a different pivot when w, x, y or z dominates; all must invert."""
    quats = torch.tensor(
        [[0.1, 0.2, 0.3, 0.9], [0.9, 0.1, -0.2, 0.3], [-0.2, 0.9, 0.1, 0.3], [0.1, -0.3, 0.9, 0.2]],
        dtype=torch.float64,
    )
    quats = quats / quats.norm(dim=-1, keepdim=True)
    rotations = quaternion_to_matrix(quats)
    eye = torch.eye(3, dtype=torch.float64).expand(4, 3, 3)
    assert torch.allclose(rotations @ rotations.transpose(-1, -2), eye, atol=1e-12)
    assert torch.allclose(matrix_to_quaternion(rotations), quats, atol=1e-12)
    # not-normalised input gives the same rotation
    assert torch.allclose(quaternion_to_matrix(3 * quats), rotations, atol=1e-12)

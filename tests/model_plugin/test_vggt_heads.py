"""The camera and point heads reproduce the original (shared fixture B), from stored tokens and end to end."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import fixture_path
from safetensors.torch import load_file
from test_vggt_aggregator import fixture_aggregator

from model_plugin.vggt import CameraHead, DPTHead, extri_intri_to_pose_encoding, pose_encoding_to_extri_intri


def _heads() -> tuple[CameraHead, DPTHead]:
    config = json.loads(fixture_path("vggt_heads", "config.json").read_text())
    camera = CameraHead(**config["camera_head_kwargs"]).eval()
    point = DPTHead(**config["point_head_kwargs"]).eval()
    for module, name in ((camera, "camera_head"), (point, "point_head")):
        weights = load_file(fixture_path("vggt_heads", f"{name}.safetensors"))
        module.load_state_dict({k: v.float() for k, v in weights.items()}, strict=True)
    return camera, point


@pytest.fixture(scope="module")
def expected() -> dict[str, torch.Tensor]:
    return load_file(fixture_path("vggt_heads", "case_b2s2_42x546.safetensors"))


@pytest.fixture(scope="module")
def inputs() -> dict[str, torch.Tensor]:
    return load_file(fixture_path("vggt_aggregator", "case_b2s2_42x546.safetensors"))


def _check(name: str, got: torch.Tensor, want: torch.Tensor, atol: float, rtol: float = 0.0) -> None:
    err = (got - want).abs().max().item()
    assert torch.allclose(got, want, atol=atol, rtol=rtol), f"{name}: max abs error {err:.3g}"


def _run_heads(tokens, images, chunk: int = 8):
    camera, point = _heads()
    with torch.no_grad():
        poses = camera(tokens)
        points, conf = point(tokens, images, patch_start_idx=5, frames_chunk_size=chunk)
    return poses, points, conf


@pytest.mark.parametrize("chunk", [8, 1])
def test_heads_on_stored_tokens(inputs, expected, chunk: int) -> None:
    tokens = [inputs["aggregated_tokens.0"], inputs["aggregated_tokens.1"]]
    images = inputs["images_u8"].float() / 255.0
    poses, points, conf = _run_heads(tokens, images, chunk)
    for i, pose in enumerate(poses):
        _check(f"pose_enc_list.{i}", pose, expected[f"pose_enc_list.{i}"], atol=1e-5)
    _check("world_points", points, expected["world_points"], atol=1e-4, rtol=1e-4)
    _check("world_points_conf", conf, expected["world_points_conf"], atol=1e-4, rtol=1e-4)
    extrinsic, intrinsic = pose_encoding_to_extri_intri(poses[-1], (42, 546))
    _check("extrinsic", extrinsic, expected["extrinsic"], atol=1e-5)
    assert torch.allclose(intrinsic, expected["intrinsic"], rtol=1e-5, atol=0)


def test_heads_end_to_end_from_images(inputs, expected) -> None:
    images = inputs["images_u8"].float() / 255.0
    with torch.no_grad():
        tokens, _ = fixture_aggregator()(images)
    poses, points, conf = _run_heads(tokens, images)
    _check("pose_enc", poses[-1], expected["pose_enc"], atol=1e-5)
    _check("world_points", points, expected["world_points"], atol=1e-4, rtol=1e-4)
    _check("world_points_conf", conf, expected["world_points_conf"], atol=1e-4, rtol=1e-4)


def test_point_head_on_selected_layers_equals_full_list(inputs) -> None:
    """Feeding only the point head's layers (as space-aware sampling does) changes nothing."""
    _, point = _heads()
    tokens = [inputs["aggregated_tokens.0"], inputs["aggregated_tokens.1"]]
    selected = [tokens[i] for i in point.intermediate_layer_idx]
    images = inputs["images_u8"].float() / 255.0
    with torch.no_grad():
        full = point(tokens, images, 5)
        picked = point(selected, images, 5, layers_are_selected=True)
    assert torch.equal(full[0], picked[0]) and torch.equal(full[1], picked[1])


def test_pose_encoding_round_trip(expected) -> None:
    pose = expected["pose_enc"].double()
    pose = torch.cat([pose[..., :3], pose[..., 3:7] / pose[..., 3:7].norm(dim=-1, keepdim=True), pose[..., 7:]], -1)
    pose = torch.where(pose[..., 6:7] < 0, torch.cat([pose[..., :3], -pose[..., 3:7], pose[..., 7:]], -1), pose)
    extrinsic, intrinsic = pose_encoding_to_extri_intri(pose, (42, 546))
    back = extri_intri_to_pose_encoding(extrinsic, intrinsic, (42, 546))
    assert torch.allclose(back, pose, atol=1e-9)

"""The MLP-add connector reproduces the original (shared fixture C) exactly, packing order included."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import fixture_path
from safetensors.torch import load_file

from model_plugin.connector import MLPAddConnector, group_grid_rows, pack_spatial_tokens

CASES = ["case_v1_s4_16x22", "case_v2_s4_16x22_s2_10x14", "case_v1_s6_8x12_split_rows"]


def _connector() -> MLPAddConnector:
    kwargs = json.loads(fixture_path("mlp_add_connector", "config.json").read_text())["constructor_kwargs"]
    conn = MLPAddConnector(
        vggt_dim=kwargs["vggt_dim"],
        language_dim=kwargs["language_dim"],
        spatial_embeds_layer_idx=kwargs["spatial_embeds_layer_idx"],
        temporal_merge_size=kwargs["visual_temporal_merge_size"],
        spatial_merge_size=kwargs["visual_spatial_merge_size"],
    )
    weights = load_file(fixture_path("mlp_add_connector", "weights.safetensors"))
    conn.load_state_dict(weights, strict=True)
    return conn.eval()


def _videos(case: dict[str, torch.Tensor], layer_idx: int) -> list[torch.Tensor]:
    n_videos = len({k.split(".")[1] for k in case if k.startswith("spatial_embeds.")})
    out = []
    for v in range(n_videos):
        layers = sorted((k for k in case if k.startswith(f"spatial_embeds.{v}.")), key=lambda k: int(k[-1]))
        out.append(case[layers[layer_idx]])
    return out


@pytest.mark.parametrize("name", CASES)
def test_connector_matches_fixture(name: str) -> None:
    conn = _connector()
    case = load_file(fixture_path("mlp_add_connector", f"{name}.safetensors"))
    videos = _videos(case, conn.spatial_embeds_layer_idx)
    with torch.no_grad():
        fused = conn(case["video_embeds"], videos, int(case["patch_start_idx"][0]), case["grid_thw"])
    err = (fused - case["fused_embeds"]).abs().max().item()
    assert torch.allclose(fused, case["fused_embeds"], atol=1e-5, rtol=1e-5), f"max abs error {err:.3g}"


def test_packing_order_matches_debug_tensor() -> None:
    case = load_file(fixture_path("mlp_add_connector", "case_v1_s4_16x22.safetensors"))
    (tokens,) = _videos(case, -1)
    packed = pack_spatial_tokens(tokens[:, 5:], 16, 22)
    assert torch.equal(packed, case["debug.merged_spatial_embeds"])


def test_wrong_layer_is_detectable() -> None:
    """Layer 0 differs from layer -1 in the fixture, so using the wrong layer cannot pass silently."""
    conn = _connector()
    case = load_file(fixture_path("mlp_add_connector", "case_v1_s4_16x22.safetensors"))
    with torch.no_grad():
        fused = conn(case["video_embeds"], _videos(case, 0), 5, case["grid_thw"])
    assert not torch.allclose(fused, case["fused_embeds"], atol=1e-3)


def test_grid_rows_must_cover_the_frames() -> None:
    with pytest.raises(ValueError, match="does not match"):
        group_grid_rows([5], torch.tensor([[2, 8, 12], [1, 8, 12]]), 2)
    with pytest.raises(ValueError, match="fewer rows"):
        group_grid_rows([6], torch.tensor([[2, 8, 12]]), 2)
    with pytest.raises(ValueError, match="disagree"):
        group_grid_rows([6], torch.tensor([[2, 8, 12], [1, 8, 10]]), 2)
    with pytest.raises(ValueError, match="used 1"):
        group_grid_rows([4], torch.tensor([[2, 8, 12], [1, 8, 12]]), 2)


def test_mismatched_video_embeddings_raise() -> None:
    conn = _connector()
    case = load_file(fixture_path("mlp_add_connector", "case_v1_s4_16x22.safetensors"))
    with pytest.raises(ValueError, match="frames or grid sizes differ"):
        conn(case["video_embeds"][:-1], _videos(case, -1), 5, case["grid_thw"])

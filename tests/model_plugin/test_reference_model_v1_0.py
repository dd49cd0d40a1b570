"""The tiny v1.0 checkpoint (``Qwen2_5_VL_VGGTForConditionalGeneration`` layout) and its transformers reference."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from reference_checks import assert_generate_uses_the_fused_features, assert_spatial_features_reach_the_logits
from safetensors import safe_open

from model_plugin.config import V1_0_ARCHITECTURE
from model_plugin.reference import Qwen2_5_VL_VGGTForConditionalGeneration
from model_plugin.reference.demo import synthetic_video
from model_plugin.reference.inference import build_inputs
from model_plugin.tiny import build_tiny_model, checkpoint_state_dict, write_tiny_checkpoint

CHECKPOINT_PREFIXES = {
    "visual.",
    "model.",
    "lm_head.",
    "vggt.aggregator.",
    "vggt.camera_head.",
    "vggt.point_head.",
    "vggt.depth_head.",
    "vggt_embedding_merger.",
}


@pytest.fixture(scope="module")
def reference(tiny_checkpoint_v1_0: Path) -> Qwen2_5_VL_VGGTForConditionalGeneration:
    return Qwen2_5_VL_VGGTForConditionalGeneration.from_pretrained(tiny_checkpoint_v1_0).eval()


def test_checkpoint_has_the_v1_0_layout(tiny_checkpoint_v1_0: Path) -> None:
    with safe_open(tiny_checkpoint_v1_0 / "model.safetensors", framework="pt") as f:
        keys = list(f.keys())
    for prefix in CHECKPOINT_PREFIXES:
        assert any(k.startswith(prefix) for k in keys), f"no key under {prefix}"
    assert not [k for k in keys if not any(k.startswith(p) for p in CHECKPOINT_PREFIXES)]
    config = json.loads((tiny_checkpoint_v1_0 / "config.json").read_text())
    assert config["model_type"] == "qwen2_5_vl"
    assert config["architectures"] == [V1_0_ARCHITECTURE]
    assert "spatial_config" not in config and "connector_config" not in config


@pytest.mark.parametrize("layout", ["4.51", "4.52"])
def test_both_key_layouts_load_without_missing_or_unexpected_keys(tmp_path: Path, layout: str) -> None:
    path = write_tiny_checkpoint(tmp_path / layout, seed=3, key_layout=layout, arch="v1.0")
    model, info = Qwen2_5_VL_VGGTForConditionalGeneration.from_pretrained(path, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"], info
    expected = checkpoint_state_dict(build_tiny_model(seed=3, arch="v1.0"), key_layout="4.52")
    loaded = model.state_dict()
    assert expected.keys() == loaded.keys()
    assert all(torch.equal(expected[k], loaded[k]) for k in expected)


def test_merger_output_is_added_to_the_video_embeddings(reference, processor) -> None:
    """The fused embeddings are Qwen's ViT output plus the merger of the last aggregator layer, row for row."""
    video = synthetic_video(frames=4, height=56, width=84, seed=1)
    inputs = build_inputs(processor, [video], "Where is the door?")
    grid = inputs["video_grid_thw"]
    with torch.no_grad():
        fused = reference.fuse_visual_features(inputs["pixel_values_videos"], grid, inputs["video_tchw"], "video")
        plain = reference.model.visual(inputs["pixel_values_videos"], grid_thw=grid).pooler_output
        (layer,), start = reference.vggt.aggregator(inputs["video_tchw"][0][None], layers=[-1])
        delta = reference.vggt_embedding_merger([layer], start, (56, 84), "video").reshape(-1, plain.shape[-1])
    assert torch.allclose(fused.pooler_output[0], plain + delta, atol=1e-5)


@pytest.mark.parametrize("frames", [2, 5])
def test_generate_uses_the_fused_features(reference, processor, frames: int) -> None:
    assert_generate_uses_the_fused_features(reference, processor, frames)


def test_spatial_features_reach_the_logits(reference, processor) -> None:
    assert_spatial_features_reach_the_logits(reference, processor)

"""The tiny checkpoint (original layout) and the transformers reference model built on it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from reference_checks import assert_generate_uses_the_fused_features, assert_spatial_features_reach_the_logits
from safetensors import safe_open
from transformers import Qwen2_5_VLForConditionalGeneration

from model_plugin.reference import SpatialMLLMForConditionalGeneration
from model_plugin.reference.demo import synthetic_video
from model_plugin.reference.inference import build_inputs, generate_answer
from model_plugin.tiny import build_tiny_model, checkpoint_state_dict, write_tiny_checkpoint

CHECKPOINT_PREFIXES = {
    "visual.",
    "model.",
    "lm_head.",
    "spatial_encoder.vggt_model.aggregator.",
    "spatial_encoder.vggt_model.camera_head.",
    "spatial_encoder.vggt_model.point_head.",
    "spatial_encoder.vggt_model.depth_head.",
    "connector.",
}


def _checkpoint_keys(path: Path) -> list[str]:
    with safe_open(path / "model.safetensors", framework="pt") as f:
        return list(f.keys())


@pytest.fixture(scope="module")
def reference(tiny_checkpoint: Path) -> SpatialMLLMForConditionalGeneration:
    return SpatialMLLMForConditionalGeneration.from_pretrained(tiny_checkpoint).eval()


def _logits(model, processor, videos, question="How many chairs?", **overrides) -> torch.Tensor:
    inputs = build_inputs(processor, videos, question)
    inputs.update(overrides)
    with torch.no_grad():
        return model(**inputs).logits[0]


def test_checkpoint_has_the_original_layout(tiny_checkpoint: Path) -> None:
    keys = _checkpoint_keys(tiny_checkpoint)
    for prefix in CHECKPOINT_PREFIXES:
        assert any(k.startswith(prefix) for k in keys), f"no key under {prefix}"
    strays = [k for k in keys if not any(k.startswith(p) for p in CHECKPOINT_PREFIXES)]
    assert not strays
    assert not any(k.startswith(("model.visual.", "model.language_model.")) for k in keys)
    config = json.loads((tiny_checkpoint / "config.json").read_text())
    assert config["model_type"] == "spatial-mllm"
    assert config["architectures"] == ["SpatialMLLMForConditionalGeneration"]
    assert config["connector_config"] == {"connector_type": "mlp_add", "spatial_embeds_layer_idx": -1}
    assert config["hidden_size"] // config["num_attention_heads"] in (32, 64)  # vLLM CPU attention sizes
    for name in (
        "generation_config.json",
        "preprocessor_config.json",
        "tokenizer.json",
        "chat_template.json",
    ):
        assert (tiny_checkpoint / name).is_file(), name


def test_tokenizer_has_qwen2_5_vl_special_token_ids(processor) -> None:
    tok = processor.tokenizer
    expected = {
        "<|vision_start|>": 151652,
        "<|vision_end|>": 151653,
        "<|image_pad|>": 151655,
        "<|video_pad|>": 151656,
    }
    assert {t: tok.convert_tokens_to_ids(t) for t in expected} == expected
    assert tok.convert_tokens_to_ids("<|im_end|>") == 151645
    assert len(tok) == 151665


@pytest.mark.parametrize("layout", ["4.51", "4.52"])
def test_both_key_layouts_load_without_missing_or_unexpected_keys(tmp_path: Path, layout: str) -> None:
    path = write_tiny_checkpoint(tmp_path / layout, seed=3, key_layout=layout)
    model, info = SpatialMLLMForConditionalGeneration.from_pretrained(path, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"], info
    expected = checkpoint_state_dict(build_tiny_model(seed=3), key_layout="4.52")
    loaded = model.state_dict()
    assert expected.keys() == loaded.keys()
    assert all(torch.equal(expected[k], loaded[k]) for k in expected)


def test_random_weights_are_far_from_defaults() -> None:
    model = build_tiny_model(seed=0)
    for name, param in model.named_parameters():
        assert param.abs().max() > 0, f"{name} is all zeros"
        assert not torch.all(param == 1), f"{name} is all ones"
        if name.endswith(".gamma"):
            assert param.min() >= 0.5 and param.max() <= 1.5, name


def test_generates(reference, processor) -> None:
    answer = generate_answer(reference, processor, [synthetic_video()], "How many chairs?", max_new_tokens=8)
    assert isinstance(answer, str) and answer


@pytest.mark.parametrize("frames", [2, 5])
def test_generate_uses_the_fused_features(reference, processor, frames: int) -> None:
    assert_generate_uses_the_fused_features(reference, processor, frames)


def test_spatial_features_reach_the_logits(reference, processor) -> None:
    assert_spatial_features_reach_the_logits(reference, processor)


def test_zero_connector_gives_plain_qwen(tiny_checkpoint: Path, processor) -> None:
    """With the connector's output layer zeroed the model is exactly Qwen2.5-VL: the fusion is purely additive
    and everything else (ViT, placeholders, M-RoPE, LM) is Qwen's own code path."""
    spatial = SpatialMLLMForConditionalGeneration.from_pretrained(tiny_checkpoint).eval()
    with torch.no_grad():
        spatial.connector.mlp[2].weight.zero_()
        spatial.connector.mlp[2].bias.zero_()
    qwen = Qwen2_5_VLForConditionalGeneration.from_pretrained(tiny_checkpoint).eval()
    video = synthetic_video(frames=6, height=84, width=112, seed=2)
    inputs = build_inputs(processor, [video], "Describe the room.")
    # Both get the seed's M-RoPE positions (plain transformers 5 uses another rule after a video).
    positions, _ = spatial.model.get_rope_index(
        inputs["input_ids"],
        inputs["mm_token_type_ids"],
        video_grid_thw=inputs["video_grid_thw"],
        second_per_grid_ts=inputs["second_per_grid_ts"],
        attention_mask=inputs["attention_mask"],
    )
    with torch.no_grad():
        plain_inputs = {k: v for k, v in inputs.items() if k != "video_tchw"}
        expected = qwen(**plain_inputs, position_ids=positions).logits
        got = spatial(**inputs, position_ids=positions).logits
    assert torch.allclose(got, expected, atol=1e-5), (got - expected).abs().max()


def test_odd_frame_count_pads_like_qwen(reference, processor) -> None:
    """3 frames are read as 4 with the last doubled, by the ViT and the spatial encoder alike."""
    video = synthetic_video(frames=3, seed=5)
    padded = torch.cat([video, video[-1:]])
    assert torch.allclose(_logits(reference, processor, [video]), _logits(reference, processor, [padded]), atol=1e-5)


def test_image_goes_through_the_spatial_encoder(reference, processor) -> None:
    """Documented extension: an image is two identical frames for the spatial encoder and the connector."""
    image = synthetic_video(frames=1, seed=7)[0]
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What is this?"}]}]
    prompt = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    inputs = processor(
        text=[prompt],
        images=[image],
        return_tensors="pt",
        images_kwargs={"size": {"shortest_edge": 112 * 140, "longest_edge": 112 * 140}},
    )
    assert inputs["image_grid_thw"].tolist() == [[1, 8, 10]]
    with torch.no_grad():
        base = reference(**inputs, image_tchw=[image.float() / 255.0]).logits
        other = reference(**inputs, image_tchw=[torch.flip(image, dims=[-1]).float() / 255.0]).logits
    assert torch.isfinite(base).all()
    assert not torch.allclose(base, other, atol=1e-4)
    with pytest.raises(ValueError, match="image_tchw"):
        reference(**inputs)


def test_mrope_follows_the_seed_rule(reference) -> None:
    """Text after a video continues at the video block's largest position + 1 (transformers 4.51, vLLM)."""
    video_token, text_token = 151656, 9707
    ids = torch.tensor([[text_token] * 3 + [video_token] * 12 + [text_token] * 2])
    types = torch.tensor([[0] * 3 + [2] * 12 + [0] * 2])
    positions, delta = reference.model.get_rope_index(
        ids, types, video_grid_thw=torch.tensor([[3, 4, 4]]), second_per_grid_ts=torch.tensor([1.0])
    )
    # 3 temporal patches x 2 tokens/s x 1 s each: temporal positions 3, 5, 7; rows and columns 3..4.
    assert positions[0, 0, 3:15].tolist() == [3] * 4 + [5] * 4 + [7] * 4
    assert positions[1, 0, 3:7].tolist() == [3, 3, 4, 4]
    assert positions[:, 0, 15].tolist() == [8, 8, 8]
    assert int(delta) == 10 - ids.shape[1]

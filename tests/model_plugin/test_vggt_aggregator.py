"""The VGGT aggregator reproduces the original (shared fixture A): every layer, both cases, debug tensors."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import fixture_path
from safetensors.torch import load_file

from model_plugin.vggt import Aggregator

CASES = ["case_b1s4_224x308", "case_b2s2_42x546"]


def fixture_aggregator() -> Aggregator:
    """Fixture A's reduced aggregator (ViT-S DINO cut to 2 blocks, 2 alternating layers), weights loaded."""
    config = json.loads(fixture_path("vggt_aggregator", "config.json").read_text())
    kwargs = dict(config["constructor_kwargs"])
    kwargs["dino_depth"] = config["dino_blocks_kept"]
    model = Aggregator(**kwargs).eval()
    weights = load_file(fixture_path("vggt_aggregator", "weights.safetensors"))
    model.load_state_dict({k: v.float() for k, v in weights.items()}, strict=True)
    return model


@pytest.fixture(scope="module")
def aggregator() -> Aggregator:
    return fixture_aggregator()


def _case(name: str) -> dict[str, torch.Tensor]:
    return load_file(fixture_path("vggt_aggregator", f"{name}.safetensors"))


@pytest.mark.parametrize("name", CASES)
def test_all_layers_match(aggregator: Aggregator, name: str) -> None:
    case = _case(name)
    with torch.no_grad():
        outputs, start = aggregator(case["images_u8"].float() / 255.0)
    assert start == int(case["patch_start_idx"][0]) == 5
    assert len(outputs) == 2
    for i, out in enumerate(outputs):
        expected = case[f"aggregated_tokens.{i}"]
        err = (out - expected).abs().max().item()
        assert torch.allclose(out, expected, atol=1e-4, rtol=1e-4), f"layer {i}: max abs error {err:.3g}"


def test_dino_internals_match(aggregator: Aggregator) -> None:
    """Case 2 shrinks the 37x37 positional grid on rows and enlarges it on columns (bicubic + antialias)."""
    case = _case("case_b2s2_42x546")
    dino = aggregator.patch_embed
    with torch.no_grad():
        pos = dino.interpolated_pos_embed(3, 39)
        images = case["images_u8"].float() / 255.0
        normalised = aggregator.normalize(images)
        tokens = dino(normalised.reshape(-1, 3, 42, 546))
    assert torch.allclose(pos, case["debug.dino_pos_embed_interp"], atol=1e-5)
    assert torch.allclose(tokens, case["debug.dino_x_norm_patchtokens"], atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("layers", [[-1], [0], [1, 0], [0, 0, 1, 1]])
def test_selected_layers_equal_the_full_run(aggregator: Aggregator, layers: list[int]) -> None:
    images = _case("case_b2s2_42x546")["images_u8"].float() / 255.0
    with torch.no_grad():
        full, _ = aggregator(images)
        picked, _ = aggregator(images, layers=layers)
    assert len(picked) == len(layers)
    for out, i in zip(picked, layers, strict=True):
        assert torch.equal(out, full[i])


def test_only_needed_layers_run(aggregator: Aggregator) -> None:
    """Asking for layer 0 must not run layer 1's blocks (the connector's memory bound depends on it)."""
    calls: list[str] = []
    hooks = [
        block.register_forward_hook(lambda *_, n=name: calls.append(n))
        for name, block in [("f1", aggregator.frame_blocks[1]), ("g1", aggregator.global_blocks[1])]
    ]
    try:
        with torch.no_grad():
            aggregator(torch.rand(1, 2, 3, 28, 42), layers=[0])
    finally:
        for hook in hooks:
            hook.remove()
    assert calls == []


def test_bad_inputs_are_rejected(aggregator: Aggregator) -> None:
    with pytest.raises(ValueError, match="multiple of 14"):
        aggregator(torch.rand(1, 2, 3, 30, 42))
    with pytest.raises(IndexError):
        aggregator(torch.rand(1, 2, 3, 28, 42), layers=[2])


def test_bfloat16_is_close_to_float32(aggregator: Aggregator) -> None:
    case = _case("case_b1s4_224x308")
    images = case["images_u8"].float() / 255.0
    bf16 = fixture_aggregator().to(torch.bfloat16)
    with torch.no_grad():
        (out,), _ = bf16(images.to(torch.bfloat16), layers=[-1])
    expected = case["aggregated_tokens.1"]
    rel = (out.float() - expected).norm() / expected.norm()
    assert out.dtype == torch.bfloat16
    assert rel < 0.05, f"relative error {rel:.3g}"

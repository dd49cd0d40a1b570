"""The VGGT aggregator reproduces the original (shared fixture A): every layer, both cases, DINO internals."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import fixture_path
from safetensors.torch import load_file

from model_plugin.vggt import Aggregator

CASES = ["case_b1s4_224x308", "case_b2s2_42x546"]


def fixture_aggregator_kwargs() -> dict:
    """Fixture A's constructor arguments: ViT-S DINO cut to 2 blocks, 2 alternating layers of width 384."""
    config = json.loads(fixture_path("vggt_aggregator", "config.json").read_text())
    return {**config["constructor_kwargs"], "dino_depth": config["dino_blocks_kept"]}


def fixture_aggregator_weights() -> dict[str, torch.Tensor]:
    """Fixture A's weights as float32 (stored as float16, which loses nothing)."""
    return {k: v.float() for k, v in load_file(fixture_path("vggt_aggregator", "weights.safetensors")).items()}


def fixture_aggregator() -> Aggregator:
    model = Aggregator(**fixture_aggregator_kwargs()).eval()
    model.load_state_dict(fixture_aggregator_weights(), strict=True)
    return model


def load_case(name: str) -> dict[str, torch.Tensor]:
    return load_file(fixture_path("vggt_aggregator", f"{name}.safetensors"))


def assert_close(name: str, got: torch.Tensor, want: torch.Tensor, atol: float, rtol: float = 0.0) -> None:
    assert got.shape == want.shape, f"{name}: shape {tuple(got.shape)} != {tuple(want.shape)}"
    err = (got.double() - want.double()).abs().max().item()
    assert torch.allclose(got, want, atol=atol, rtol=rtol), f"{name}: max abs error {err:.3g}"


@pytest.fixture(scope="module")
def aggregator() -> Aggregator:
    return fixture_aggregator()


def test_weights_load_strictly() -> None:
    model = Aggregator(**fixture_aggregator_kwargs())
    weights = fixture_aggregator_weights()
    assert set(model.state_dict()) == set(weights)
    assert sum(p.numel() for p in model.parameters()) == 11_411_584


@pytest.mark.parametrize("name", CASES)
def test_all_layers_match(aggregator: Aggregator, name: str) -> None:
    case = load_case(name)
    with torch.no_grad():
        outputs, start = aggregator(case["images_u8"].float() / 255)
    assert start == int(case["patch_start_idx"][0]) == 5
    assert len(outputs) == 2
    for i, out in enumerate(outputs):
        assert_close(f"{name} aggregated_tokens.{i}", out, case[f"aggregated_tokens.{i}"], atol=1e-4, rtol=1e-4)


def test_dino_internals_match(aggregator: Aggregator) -> None:
    """Case 2 shrinks the 37x37 positional grid on rows and enlarges it on columns (bicubic + antialias)."""
    case = load_case("case_b2s2_42x546")
    images = case["images_u8"].float() / 255
    dino = aggregator.patch_embed
    with torch.no_grad():
        pos = dino.interpolated_pos_embed(3, 39)
        tokens = dino(aggregator.normalize(images).reshape(-1, 3, 42, 546))
    assert pos.dtype == torch.float32
    assert_close("debug.dino_pos_embed_interp", pos, case["debug.dino_pos_embed_interp"], atol=1e-5)
    want = case["debug.dino_x_norm_patchtokens"]
    assert_close("debug.dino_x_norm_patchtokens", tokens, want, atol=1e-4, rtol=1e-4)


def test_pos_embed_at_native_size_is_the_stored_one(aggregator: Aggregator) -> None:
    pos = aggregator.patch_embed.interpolated_pos_embed(37, 37)
    assert torch.equal(pos, aggregator.patch_embed.pos_embed)


@pytest.mark.parametrize("layers", [[-1], [0], [1, 0], [0, 0, 1, 1], [-2, -1]])
def test_selected_layers_equal_the_full_run(aggregator: Aggregator, layers: list[int]) -> None:
    images = load_case("case_b2s2_42x546")["images_u8"].float() / 255
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


def test_single_frame_and_square_native_size(aggregator: Aggregator) -> None:
    """S = 1 (only first-frame special tokens) and the 518x518 path without a pos-embed resize both run."""
    with torch.no_grad():
        (out,), start = aggregator(torch.rand(1, 1, 3, 518, 518), layers=[-1])
    assert out.shape == (1, 1, start + 37 * 37, 768)
    assert torch.isfinite(out).all()


def test_bad_inputs_are_rejected(aggregator: Aggregator) -> None:
    with pytest.raises(ValueError, match="multiple of 14"):
        aggregator(torch.rand(1, 2, 3, 30, 42))
    with pytest.raises(ValueError, match="3 input channels"):
        aggregator(torch.rand(1, 2, 4, 28, 42))
    with pytest.raises(IndexError):
        aggregator(torch.rand(1, 2, 3, 28, 42), layers=[2])


def test_grouped_alternation_keeps_layer_selection_consistent() -> None:
    """aa_block_size > 1 and the reversed order (original options VGGT-1B does not use) run and select layers
    consistently: a requested layer equals the same entry of the full run."""
    torch.manual_seed(0)
    kwargs = {**fixture_aggregator_kwargs(), "depth": 4, "aa_block_size": 2, "aa_order": ("global", "frame")}
    model = Aggregator(**kwargs).eval()
    images = torch.rand(1, 2, 3, 28, 42)
    with torch.no_grad():
        full, _ = model(images)
        picked, _ = model(images, layers=[1, 2])
    assert len(full) == 4
    assert torch.equal(picked[0], full[1]) and torch.equal(picked[1], full[2])


@pytest.mark.parametrize(("dtype", "max_rel"), [(torch.bfloat16, 0.03), (torch.float16, 0.005)])
def test_half_precision_is_close_to_float32(dtype: torch.dtype, max_rel: float) -> None:
    """Keeps dtype handling honest: no float32 leaks into a half-precision run and the result stays close."""
    case = load_case("case_b1s4_224x308")
    model = fixture_aggregator().to(dtype)
    with torch.no_grad():
        (out,), start = model((case["images_u8"].float() / 255).to(dtype), layers=[-1])
    assert out.dtype == dtype and start == 5
    expected = case["aggregated_tokens.1"]
    rel = ((out.float() - expected).norm() / expected.norm()).item()
    assert rel < max_rel, f"{dtype}: relative error {rel:.3g}"  # observed: bf16 0.017, fp16 0.0012

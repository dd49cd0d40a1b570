"""The v1.0 ``VGGTEmbeddingMerger`` reproduces the original (shared fixture ``v1_0_merger``), packing exactly."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import fixture_path
from safetensors import safe_open
from safetensors.torch import load_file

from model_plugin.merger_v1 import VGGTEmbeddingMerger, pack_pairs_of_blocks

CASES = ["a_video_b1f4_56x84", "b_video_b2f2_28x56", "c_images_b1f1_56x56"]


def _merger() -> VGGTEmbeddingMerger:
    config = json.loads(fixture_path("v1_0_merger", "config.json").read_text())["config"]
    merger = VGGTEmbeddingMerger(config["input_dim"], config["output_dim"])
    weights = {k: v.float() for k, v in load_file(fixture_path("v1_0_merger", "weights.safetensors")).items()}
    merger.load_state_dict(weights, strict=True)
    return merger.eval()


def _case(name: str) -> tuple[dict[str, torch.Tensor], str]:
    path = fixture_path("v1_0_merger", f"case_{name}.safetensors")
    with safe_open(str(path), framework="pt") as handle:
        media_type = handle.metadata()["media_type"]
    return load_file(path), media_type


@pytest.mark.parametrize("name", CASES)
def test_merger_matches_fixture(name: str) -> None:
    merger = _merger()
    case, media_type = _case(name)
    captured: dict[str, torch.Tensor] = {}
    merger.token_merge_ln_q.register_forward_pre_hook(lambda _m, args: captured.setdefault("packed", args[0]))
    merger.token_merge_mlp.register_forward_hook(lambda _m, _a, out: captured.setdefault("merged", out))
    start = int(case["patch_start_idx"][0])
    with torch.no_grad():
        out = merger([case["tokens_list0_unused"], case["tokens"]], start, case["images_shape"].tolist(), media_type)
    assert torch.equal(captured["packed"], case["debug.packed"])
    for got, want in ((captured["merged"], case["merge_tokens_out"]), (out, case["output"])):
        err = (got - want).abs().max().item()
        assert torch.allclose(got, want, atol=1e-5, rtol=1e-5), f"max abs error {err:.3g}"
    assert torch.equal(out.reshape(-1, out.shape[-1]), out.view(-1, out.shape[-1]))
    assert torch.allclose(out.reshape(-1, out.shape[-1]), case["output_flat"], atol=1e-5, rtol=1e-5)


def test_packing_is_the_reverse_of_v1_1() -> None:
    """Column (tt, sh, sw, d) holds frame 2t'+tt, patch (2hb+sh, 2wb+sw), channel d: checked by formula."""
    tokens = torch.arange(1 * 4 * 24 * 3, dtype=torch.float32).reshape(1, 4, 24, 3)
    packed = pack_pairs_of_blocks(tokens, 4, 6)
    for tp, hb, wb, tt, sh, sw, d in [(0, 0, 0, 1, 0, 1, 2), (1, 1, 2, 0, 1, 0, 1), (1, 0, 1, 1, 1, 1, 0)]:
        column = ((tt * 2 + sh) * 2 + sw) * 3 + d
        assert packed[0, tp, hb, wb, column] == tokens[0, 2 * tp + tt, (2 * hb + sh) * 6 + 2 * wb + sw, d]

"""The dtype rules of ``model_plugin.dtype_rules`` outside an engine: the space-aware geometry pass in bfloat16 as
the original's ``sa_sampling.py`` (float32 weights, bfloat16 autocast around the aggregator, float32 point head),
and the connectors' RMSNorm as transformers' Qwen2RMSNorm in bfloat16. Serving's rules are pinned inside the
engine by ``test_vllm_bfloat16.py``."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import dtype_probe
import pytest
import torch
from torch import nn

from model_plugin.connector import RMSNorm
from model_plugin.reference import Qwen2_5_VL_VGGTForConditionalGeneration, SpatialMLLMForConditionalGeneration
from model_plugin.reference.demo import synthetic_video
from model_plugin.reference.inference import build_inputs
from sampling.geometry import GeometryNetwork


def _dtypes(values) -> set[torch.dtype]:
    found: set[torch.dtype] = set()
    for value in values:
        if isinstance(value, torch.Tensor) and value.is_floating_point():
            found.add(value.dtype)
        elif isinstance(value, (list, tuple)):
            found |= _dtypes(value)
    return found


def _record(modules: dict[str, nn.Module]) -> tuple[dict[str, dict[str, set]], list]:
    records: dict[str, dict[str, set]] = defaultdict(lambda: defaultdict(set))
    handles = []
    for name, module in modules.items():

        def hook(_module, args, output, name=name) -> None:
            records[name]["inputs"] |= _dtypes(args)
            records[name]["outputs"] |= _dtypes([output])

        handles.append(module.register_forward_hook(hook))
    return records, handles


@pytest.fixture(scope="module")
def frames() -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (4, 3, 56, 84), dtype=torch.uint8, generator=generator).float() / 255


def test_geometry_pass_in_bfloat16_follows_sa_sampling(tiny_checkpoint: Path, frames: torch.Tensor) -> None:
    network = GeometryNetwork.load(tiny_checkpoint, dtype=torch.bfloat16)
    assert {p.dtype for p in network.vggt.parameters()} == {torch.float32}  # weights stay float32
    aggregator, head = network.vggt.aggregator, network.vggt.point_head
    first_conv = next(m for m in head.modules() if isinstance(m, nn.Conv2d))
    records, handles = _record(
        {
            "dino_first_block": aggregator.patch_embed.blocks[0],
            "qkv": aggregator.frame_blocks[0].attn.qkv,
            "frame_block": aggregator.frame_blocks[0],
            "global_block": aggregator.global_blocks[-1],
            "point_head": head,
            "point_head_conv": first_conv,
        }
    )
    try:
        points, conf = network.world_points(frames)
    finally:
        for handle in handles:
            handle.remove()
    f32, bf16 = torch.float32, torch.bfloat16
    assert records["qkv"]["outputs"] == {bf16}  # matmuls under autocast
    for name in ("dino_first_block", "frame_block", "global_block"):  # the stream promoted to float32
        assert records[name]["inputs"] == {f32}, name
        assert records[name]["outputs"] == {f32}, name
    assert records["point_head"]["inputs"] >= {f32} and bf16 not in records["point_head_conv"]["inputs"]
    assert records["point_head_conv"]["outputs"] == {f32}  # autocast off around the head
    assert points.dtype == conf.dtype == torch.float32

    reference = GeometryNetwork.load(tiny_checkpoint, dtype=torch.float32)
    want_points, _ = reference.world_points(frames)
    rel = ((points - want_points).norm() / want_points.norm()).item()
    print(f"\ngeometry pass bf16 vs fp32 (tiny): world points relative error {rel:.4f}")
    assert rel < 0.05


def test_geometry_pass_in_float32_is_float32_throughout(tiny_checkpoint: Path, frames: torch.Tensor) -> None:
    network = GeometryNetwork.load(tiny_checkpoint, dtype=torch.float32)
    records, handles = _record({"qkv": network.vggt.aggregator.frame_blocks[0].attn.qkv})
    try:
        network.world_points(frames)
    finally:
        for handle in handles:
            handle.remove()
    assert records["qkv"]["outputs"] == {torch.float32}


@pytest.mark.parametrize("dim", [64, 2048])
def test_connector_rmsnorm_is_qwen2_rmsnorm_in_bfloat16(dim: int) -> None:
    """The original's connectors use transformers' Qwen2RMSNorm; ours must give the same bfloat16 bits."""
    from transformers.models.qwen2.modeling_qwen2 import Qwen2RMSNorm

    generator = torch.Generator().manual_seed(dim)
    x = (torch.randn(7, dim, generator=generator) * 30).to(torch.bfloat16)
    weight = (1 + torch.randn(dim, generator=generator) / 10).to(torch.bfloat16)
    ours, theirs = RMSNorm(dim, eps=1e-6).to(torch.bfloat16), Qwen2RMSNorm(dim, eps=1e-6).to(torch.bfloat16)
    with torch.no_grad():
        ours.weight.copy_(weight)
        theirs.weight.copy_(weight)
        assert torch.equal(ours(x), theirs(x))


@pytest.mark.parametrize("arch", ["v1.1", "v1.0"])
def test_reference_parts_run_in_bfloat16(
    arch: str, tiny_checkpoint: Path, processor, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """The oracle of the bfloat16 parity tests follows the original's rule: the whole model in bfloat16, no
    autocast; the VGGT aggregator, the connector (merger), the ViT and the LLM all get and give bfloat16."""
    if arch == "v1.1":
        checkpoint, cls = tiny_checkpoint, SpatialMLLMForConditionalGeneration
    else:
        from model_plugin.tiny import write_tiny_checkpoint

        checkpoint = write_tiny_checkpoint(tmp_path_factory.mktemp("tiny-v1.0"), seed=0, arch="v1.0")
        cls = Qwen2_5_VL_VGGTForConditionalGeneration
    model = cls.from_pretrained(checkpoint, dtype=torch.bfloat16).eval()
    dtype_probe.install(model)
    video = synthetic_video(frames=4, height=112, width=140, seed=11)
    with torch.no_grad():
        model(**build_inputs(processor, [video], "How many chairs?", fps=2.0))
    records = dtype_probe.read(model)
    for part in ("vggt_aggregator", "connector", "vit", "llm"):
        assert records[part]["calls"] == ["yes"], part
        for what in ("weights", "inputs", "outputs"):
            assert records[part][what] == ["bfloat16"], f"{part} {what}: {records[part][what]}"

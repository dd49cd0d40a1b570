"""The vLLM plugin on the tiny checkpoint: token and logprob parity with the reference model, encoder-cache
reuse, weight loading. One ``vllm.LLM`` engine for the whole module (engine start is ~1 minute on CPU)."""

from __future__ import annotations

import functools
import os
from pathlib import Path

import numpy as np
import pytest
import torch

os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
os.environ.setdefault("VLLM_ALLOW_INSECURE_SERIALIZATION", "1")  # apply_model with local functions

from model_plugin.reference.demo import synthetic_video
from model_plugin.reference.inference import build_inputs, identity_size_bounds
from model_plugin.vllm_model import denormalize_patches, unpatchify

pytestmark = pytest.mark.engine

MAX_TOKENS = 32
FPS = 2.0
# (frames, height, width): sizes multiple of 28, odd and even counts, 2..16 frames, square and not.
VIDEOS = [(2, 56, 56), (3, 84, 112), (4, 112, 140), (7, 56, 84), (16, 84, 56)]


@pytest.fixture(scope="module")
def llm(tiny_checkpoint: Path):
    from vllm import LLM

    engine = LLM(
        model=str(tiny_checkpoint),
        dtype="float32",
        max_model_len=4096,
        max_num_seqs=4,
        seed=0,
        enforce_eager=True,
        enable_prefix_caching=True,
        block_size=32,
        limit_mm_per_prompt={
            "video": {"count": 1, "num_frames": 16, "width": 140, "height": 112},
            "image": {"count": 1, "width": 140, "height": 112},
        },
    )
    yield engine
    del engine


def _vllm_request(processor, video: torch.Tensor, question: str) -> dict:
    """The request our server builds: frames already resized, processor resize made an identity."""
    messages = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": question}]}]
    prompt = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    frames, _, height, width = video.shape
    metadata = {
        "fps": FPS,
        "total_num_frames": frames,
        "frames_indices": list(range(frames)),
        "duration": frames / FPS,
        "do_sample_frames": False,
    }
    return {
        "prompt": prompt,
        "multi_modal_data": {"video": (video.permute(0, 2, 3, 1).numpy(), metadata)},
        "mm_processor_kwargs": {"size": identity_size_bounds(height, width), "do_sample_frames": False},
    }


def _reference_prompt_logprobs(reference, processor, video, question) -> tuple[list[int], np.ndarray]:
    inputs = build_inputs(processor, [video], question, fps=FPS)
    with torch.no_grad():
        logits = reference(**inputs).logits[0].float()
    ids = inputs["input_ids"][0]
    logprobs = torch.log_softmax(logits[:-1], dim=-1).gather(-1, ids[1:, None])[:, 0]
    return ids.tolist(), logprobs.numpy()


@pytest.mark.parametrize("shape", VIDEOS, ids=lambda s: "x".join(map(str, s)))
def test_parity_with_reference(llm, reference, processor, shape) -> None:
    from vllm import SamplingParams

    frames, height, width = shape
    video = synthetic_video(frames=frames, height=height, width=width, seed=sum(shape))
    question = "How many chairs are in the room?"
    # The checkpoint's generation_config sets repetition_penalty 1.05; both sides use it explicitly.
    params = SamplingParams(
        temperature=0.0, max_tokens=MAX_TOKENS, prompt_logprobs=0, ignore_eos=True, repetition_penalty=1.05
    )
    (out,) = llm.generate([_vllm_request(processor, video, question)], params, use_tqdm=False)

    ids, ref_logprobs = _reference_prompt_logprobs(reference, processor, video, question)
    assert list(out.prompt_token_ids) == ids
    got = np.array([next(iter(lp.values())).logprob for lp in out.prompt_logprobs[1:]])
    max_diff = float(np.abs(got - ref_logprobs).max())
    assert max_diff < 1e-3, f"max prompt logprob difference {max_diff:.3g}"

    inputs = build_inputs(processor, [video], question, fps=FPS)
    with torch.no_grad():
        ref_tokens = reference.generate(
            **inputs, max_new_tokens=MAX_TOKENS, min_new_tokens=MAX_TOKENS, do_sample=False, repetition_penalty=1.05
        )
    assert list(out.outputs[0].token_ids) == ref_tokens[0, len(ids) :].tolist()


def test_unpatchify_inverts_qwen_patchify(processor) -> None:
    """The frames the spatial encoder rebuilds are exactly the frames the processor cut patches from."""
    video = synthetic_video(frames=3, height=84, width=112, seed=9)
    out = processor.video_processor(
        videos=[video],
        do_sample_frames=False,
        do_normalize=False,
        do_rescale=False,
        size=identity_size_bounds(84, 112),
        return_tensors="pt",
    )
    grid = out["video_grid_thw"][0].tolist()
    frames = unpatchify(out["pixel_values_videos"], grid, patch=14, temporal=2, merge=2)
    expected = torch.cat([video, video[-1:]]).float()
    assert torch.equal(frames, expected)


# Functions run inside the engine's worker by ``apply_model``: module level, so they pickle by reference.
@pytest.mark.parametrize("frames", [2, 3])
def test_normalised_patches_give_back_the_frames(processor, frames: int) -> None:
    """With device-side normalisation off, patches arrive normalised; inverting them is exact."""
    video = synthetic_video(frames=frames, height=56, width=84, seed=frames)
    out = processor.video_processor(
        videos=[video], do_sample_frames=False, size=identity_size_bounds(56, 84), return_tensors="pt"
    )
    vp = processor.video_processor
    pixels = denormalize_patches(out["pixel_values_videos"], torch.tensor(vp.image_mean), torch.tensor(vp.image_std))
    rebuilt = unpatchify(pixels, out["video_grid_thw"][0].tolist(), patch=14, temporal=2, merge=2)
    padded = torch.cat([video, video[-1:]]) if frames % 2 else video
    assert torch.equal(rebuilt, padded.float() / 255.0)


def _spatial_encoder_calls_of(model) -> int:
    return model.spatial_encoder_calls


def _parameter_count_of(model) -> int:
    return sum(1 for _ in model.named_parameters())


def _load_into_fresh(model, path: str, drop: str | None, extra: dict | None) -> int:
    """Build a new instance of the served model class in the worker and load a checkpoint file into it (the
    live model's parameters were repacked by the CPU backend after its own load)."""
    from safetensors.torch import load_file
    from vllm.config import set_current_vllm_config

    # Attention layers register by name in the config's forward context; set the live model's aside meanwhile.
    context = model.vllm_config.compilation_config.static_forward_context
    live = dict(context)
    context.clear()
    try:
        with set_current_vllm_config(model.vllm_config):
            fresh = type(model)(vllm_config=model.vllm_config)
    finally:
        context.clear()
        context.update(live)
    weights = load_file(Path(path) / "model.safetensors")
    weights.update(extra or {})
    return len(fresh.load_weights((k, v) for k, v in weights.items() if k != drop))


def _spatial_encoder_calls(llm) -> int:
    return llm.apply_model(_spatial_encoder_calls_of)[0]


def test_repeated_video_reuses_the_encoders(llm, processor) -> None:
    """A second question about the same video neither re-runs VGGT nor re-computes the shared prefix."""
    from vllm import SamplingParams

    video = synthetic_video(frames=16, height=112, width=140, seed=42)  # 160 video tokens: many full KV blocks
    params = SamplingParams(temperature=0.0, max_tokens=4)
    llm.generate([_vllm_request(processor, video, "How many chairs?")], params, use_tqdm=False)
    calls = _spatial_encoder_calls(llm)
    (second,) = llm.generate([_vllm_request(processor, video, "Where is the door?")], params, use_tqdm=False)
    assert _spatial_encoder_calls(llm) == calls
    assert second.num_cached_tokens > 0
    other = synthetic_video(frames=16, height=112, width=140, seed=43)
    llm.generate([_vllm_request(processor, other, "How many chairs?")], params, use_tqdm=False)
    assert _spatial_encoder_calls(llm) == calls + 1


def test_image_parity_with_reference(llm, reference, processor) -> None:
    """Documented extension: an image runs through the spatial encoder as two identical frames."""
    from vllm import SamplingParams

    image = synthetic_video(frames=1, height=112, width=84, seed=5)[0]
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What is this?"}]}]
    prompt = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    size = identity_size_bounds(112, 84)
    request = {
        "prompt": prompt,
        "multi_modal_data": {"image": image.permute(1, 2, 0).numpy()},
        "mm_processor_kwargs": {"size": size},
    }
    params = SamplingParams(temperature=0.0, max_tokens=16, prompt_logprobs=0, ignore_eos=True, repetition_penalty=1.05)
    (out,) = llm.generate([request], params, use_tqdm=False)

    inputs = processor(text=[prompt], images=[image], return_tensors="pt", images_kwargs={"size": size})
    inputs["image_tchw"] = [image.float() / 255.0]
    with torch.no_grad():
        logits = reference(**inputs).logits[0]
        tokens = reference.generate(
            **inputs, max_new_tokens=16, min_new_tokens=16, do_sample=False, repetition_penalty=1.05
        )
    ids = inputs["input_ids"][0]
    assert list(out.prompt_token_ids) == ids.tolist()
    ref_lp = torch.log_softmax(logits[:-1], -1).gather(-1, ids[1:, None])[:, 0].numpy()
    got = np.array([next(iter(lp.values())).logprob for lp in out.prompt_logprobs[1:]])
    assert np.abs(got - ref_lp).max() < 1e-3
    assert list(out.outputs[0].token_ids) == tokens[0, len(ids) :].tolist()


def _load(llm, path: Path, drop: str | None = None, extra: dict | None = None) -> int:
    """Run the served model's ``load_weights`` on a checkpoint file; returns how many names were loaded."""
    return llm.apply_model(functools.partial(_load_into_fresh, path=str(path), drop=drop, extra=extra))[0]


@pytest.mark.parametrize("layout", ["4.51", "4.52"])
def test_both_key_layouts_load(llm, tmp_path: Path, layout: str) -> None:
    """Same seed as the served checkpoint, so the engine's weights are unchanged by the reload."""
    from model_plugin.tiny import write_tiny_checkpoint

    path = write_tiny_checkpoint(tmp_path / layout, seed=0, key_layout=layout)
    expected = llm.apply_model(_parameter_count_of)[0]
    assert _load(llm, path) == expected


def test_vggt_heads_and_track_head_are_skipped(llm, tiny_checkpoint: Path) -> None:
    track = {"spatial_encoder.vggt_model.track_head.feature_extractor.norm.weight": torch.ones(4)}
    expected = llm.apply_model(_parameter_count_of)[0]
    assert _load(llm, tiny_checkpoint, extra=track) == expected


def test_missing_connector_weight_is_a_clear_error(llm, tiny_checkpoint: Path) -> None:
    with pytest.raises(Exception, match=r"lacks Spatial-MLLM weights: connector\.mlp\.0\.weight"):
        _load(llm, tiny_checkpoint, drop="connector.mlp.0.weight")

"""The vLLM plugin on the tiny checkpoint: token and logprob parity with the reference model, encoder-cache
reuse, weight loading. One ``vllm.LLM`` engine for the whole module, in this process (``vllm_parity.engine``)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from vllm_parity import (
    encoders_reused_on_repeat,
    engine,
    image_parity,
    load_checkpoint,
    parameter_count,
    video_parity,
)

from model_plugin.reference.demo import synthetic_video
from model_plugin.reference.inference import identity_size_bounds
from model_plugin.vllm_base import denormalize_patches, unpatchify

pytestmark = pytest.mark.engine

# (frames, height, width): sizes multiple of 28, odd and even counts, 2..16 frames, square and not.
VIDEOS = [(2, 56, 56), (3, 84, 112), (4, 112, 140), (7, 56, 84), (16, 84, 56)]


@pytest.fixture(scope="module")
def llm(tiny_checkpoint: Path):
    with engine(tiny_checkpoint) as llm:
        yield llm


@pytest.mark.parametrize("shape", VIDEOS, ids=lambda s: "x".join(map(str, s)))
def test_parity_with_reference(llm, reference, processor, shape) -> None:
    frames, height, width = shape
    video = synthetic_video(frames=frames, height=height, width=width, seed=sum(shape))
    max_diff, same_tokens = video_parity(llm, reference, processor, video, "How many chairs are in the room?")
    assert max_diff < 1e-3, f"max prompt logprob difference {max_diff:.3g}"
    assert same_tokens


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


def test_repeated_video_reuses_the_encoders(llm, processor) -> None:
    """A second question about the same video neither re-runs VGGT nor re-computes the shared prefix."""
    assert encoders_reused_on_repeat(llm, processor, seed=42) == (True, True, True)


def test_image_parity_with_reference(llm, reference, processor) -> None:
    """Documented extension: an image runs through the spatial encoder as two identical frames."""
    image = synthetic_video(frames=1, height=112, width=84, seed=5)[0]
    max_diff, same_tokens = image_parity(llm, reference, processor, image, "What is this?")
    assert max_diff < 1e-3, f"max prompt logprob difference {max_diff:.3g}"
    assert same_tokens


@pytest.mark.parametrize("layout", ["4.51", "4.52"])
def test_both_key_layouts_load(llm, tmp_path: Path, layout: str) -> None:
    """Same seed as the served checkpoint, so the engine's weights are unchanged by the reload."""
    from model_plugin.tiny import write_tiny_checkpoint

    path = write_tiny_checkpoint(tmp_path / layout, seed=0, key_layout=layout)
    expected = parameter_count(llm)
    assert load_checkpoint(llm, path) == expected


def test_vggt_heads_and_track_head_are_skipped(llm, tiny_checkpoint: Path) -> None:
    track = {"spatial_encoder.vggt_model.track_head.feature_extractor.norm.weight": torch.ones(4)}
    expected = parameter_count(llm)
    assert load_checkpoint(llm, tiny_checkpoint, extra=track) == expected


def test_missing_connector_weight_is_a_clear_error(llm, tiny_checkpoint: Path) -> None:
    with pytest.raises(Exception, match=r"lacks Spatial-MLLM weights: connector\.mlp\.0\.weight"):
        load_checkpoint(llm, tiny_checkpoint, drop="connector.mlp.0.weight")

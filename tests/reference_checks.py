"""Checks every transformers reference model must pass, whatever its architecture."""

from __future__ import annotations

import torch

from model_plugin.reference.demo import synthetic_video
from model_plugin.reference.inference import build_inputs


def assert_generate_uses_the_fused_features(reference, processor, frames: int) -> None:
    """generate's own pre-encoding must go through the spatial encoder: its first-step logits equal the
    forward pass's last-position logits (a plain-ViT pre-encoding would differ)."""
    video = synthetic_video(frames=frames, height=56, width=84, seed=frames)
    inputs = build_inputs(processor, [video], "How far is the door?")
    with torch.no_grad():
        last = reference(**inputs).logits[0, -1]
        out = reference.generate(
            **inputs, max_new_tokens=1, do_sample=False, output_logits=True, return_dict_in_generate=True
        )
    assert torch.allclose(out.logits[0][0], last, atol=1e-4), (out.logits[0][0] - last).abs().max()


def assert_spatial_features_reach_the_logits(reference, processor) -> None:
    """The same ViT input with other frames for VGGT must change the logits: the spatial path is wired."""
    video = synthetic_video()
    inputs = build_inputs(processor, [video], "How many chairs?")
    with torch.no_grad():
        base = reference(**inputs).logits[0]
        inputs["video_tchw"] = [torch.flip(video, dims=[-1]).float() / 255.0]
        moved = reference(**inputs).logits[0]
    assert not torch.allclose(base, moved, atol=1e-4)

"""Seed-style inference with the reference model: one HF ``generate`` per question, batch 1.

This is how the original serves (and the baseline our benchmarks beat): frames already sampled and resized
(multiples of 28) go through the Qwen2.5-VL processor with resizing made an identity, and the same frames
divided by 255 feed the spatial encoder.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from model_plugin.seed_rules import SEED_SAMPLED_FPS


def identity_size_bounds(height: int, width: int) -> dict[str, int]:
    """Processor ``size`` bounds under which Qwen's ``smart_resize`` keeps a (multiple-of-28) frame as is."""
    pixels = height * width
    return {"shortest_edge": pixels, "longest_edge": pixels}


def to_tchw_uint8(frames: np.ndarray | torch.Tensor) -> torch.Tensor:
    """[T, H, W, 3] (decoder layout) or [T, 3, H, W] uint8 frames -> [T, 3, H, W] uint8 tensor."""
    video = torch.as_tensor(np.asarray(frames)) if isinstance(frames, np.ndarray) else frames
    if video.dtype != torch.uint8:
        raise TypeError(f"frames must be uint8, got {video.dtype}")
    if video.dim() != 4:
        raise ValueError(f"frames must be 4-D, got shape {tuple(video.shape)}")
    return video.permute(0, 3, 1, 2).contiguous() if video.shape[-1] == 3 else video


def build_inputs(processor, videos: Sequence[torch.Tensor], question: str, fps: float = SEED_SAMPLED_FPS) -> dict:
    """Chat prompt with one ``<|video_pad|>`` block per video, processed exactly as the seed does.

    ``fps`` is the rate M-RoPE's time axis assumes for the sampled frames. The default is the seed's (its
    scripts pass none, so transformers 4.51 takes 2.0); pass the real sampled rate for real-time positions.
    """
    messages = [
        {
            "role": "user",
            "content": [*({"type": "video"} for _ in videos), {"type": "text", "text": question}],
        }
    ]
    prompt = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    tchw = [to_tchw_uint8(v) for v in videos]
    _, _, height, width = tchw[0].shape
    inputs = processor(
        text=[prompt],
        videos=tchw,
        return_tensors="pt",
        videos_kwargs={
            "do_sample_frames": False,
            "cap_pixels_per_frame": False,  # frames arrive resized: the size bounds make resizing an identity
            "size": identity_size_bounds(height, width),
            "video_metadata": [
                {"fps": fps, "total_num_frames": v.shape[0], "frames_indices": list(range(v.shape[0]))} for v in tchw
            ],
        },
    )
    inputs["video_tchw"] = [v.float() / 255.0 for v in tchw]
    return inputs


@torch.no_grad()
def generate_answer(
    model,
    processor,
    videos: Sequence[torch.Tensor],
    question: str,
    max_new_tokens: int = 16,
    fps: float = SEED_SAMPLED_FPS,
) -> str:
    """Greedy answer to one question about ``videos`` (the seed's decoding: no sampling)."""
    inputs = build_inputs(processor, videos, question, fps=fps)
    prompt_len = inputs["input_ids"].shape[1]
    output = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
    return processor.batch_decode(output[:, prompt_len:], skip_special_tokens=True)[0]

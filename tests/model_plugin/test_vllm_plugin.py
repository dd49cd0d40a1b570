"""The vLLM plugin on the tiny checkpoint: token and logprob parity with the reference model, encoder-cache
reuse, weight loading. One ``vllm.LLM`` engine for the whole module (engine start is ~1 minute on CPU)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
os.environ.setdefault("VLLM_ALLOW_INSECURE_SERIALIZATION", "1")  # apply_model with local functions

from model_plugin.reference import SpatialMLLMForConditionalGeneration
from model_plugin.reference.demo import synthetic_video
from model_plugin.reference.inference import build_inputs, identity_size_bounds
from model_plugin.vllm_model import unpatchify

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
        limit_mm_per_prompt={
            "video": {"count": 1, "num_frames": 16, "width": 140, "height": 112},
            "image": {"count": 1, "width": 140, "height": 112},
        },
    )
    yield engine
    del engine


@pytest.fixture(scope="module")
def reference(tiny_checkpoint: Path):
    return SpatialMLLMForConditionalGeneration.from_pretrained(tiny_checkpoint).eval()


@pytest.fixture(scope="module")
def processor(tiny_checkpoint: Path):
    from transformers import AutoProcessor

    return AutoProcessor.from_pretrained(tiny_checkpoint)


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

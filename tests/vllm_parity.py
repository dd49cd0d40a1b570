"""What the vLLM parity tests of both architectures share: the engine, the requests our server builds, the
reference's prompt logprobs and tokens, and functions run in the engine's worker by ``apply_model``.

Functions given to ``apply_model`` live at module level, so they would pickle by reference to an engine in a
process of its own.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from model_plugin.reference.inference import build_inputs, identity_size_bounds

MAX_TOKENS = 32
IN_PROCESS = "VLLM_ENABLE_V1_MULTIPROCESSING"
KV_CACHE_BYTES = 128 << 20  # as the suite's servers (tests/conftest.py: KV_CACHE)
FPS = 2.0
LIMIT_MM_PER_PROMPT = {
    "video": {"count": 1, "num_frames": 16, "width": 140, "height": 112},
    "image": {"count": 1, "width": 140, "height": 112},
}


@contextlib.contextmanager
def engine(checkpoint: Path, dtype: str = "float32", **options) -> Iterator:
    """One small ``vllm.LLM`` with prefix caching, as the parity tests need (float32 and the test limits by default),
    run inside this pytest process and closed when the block ends.

    In-process (vLLM's ``VLLM_ENABLE_V1_MULTIPROCESSING=0``: the engine core and its one worker in this process) is
    what these tests need: the same model runner, scheduler and processors, without the two spawned processes that
    each import vLLM again (about 45 s of a 70 s start on 2 cores, and 1.5 GB). Servers, whose process tree is part
    of what is tested, keep vLLM's default. What the engine changes in this process (the environment cache, the
    distributed group, ``torch.set_num_threads``) is undone when the block ends, so later tests see a clean process.
    """
    from vllm import LLM
    from vllm.distributed import cleanup_dist_env_and_memory

    options.setdefault("limit_mm_per_prompt", LIMIT_MM_PER_PROMPT)
    set_threads, threads = torch.set_num_threads, torch.get_num_threads()
    try:  # the process is restored even when the engine fails half-built
        with pytest.MonkeyPatch.context() as env:  # read while the engine is built; nothing started later inherits it
            env.setenv(IN_PROCESS, "0")
            llm = LLM(
                model=str(checkpoint),
                dtype=dtype,
                max_model_len=4096,
                max_num_seqs=4,
                seed=0,
                enforce_eager=True,
                enable_prefix_caching=True,
                block_size=32,
                kv_cache_memory_bytes=KV_CACHE_BYTES,
                **options,
            )
        try:
            yield llm
        finally:
            llm.llm_engine.engine_core.shutdown()
            del llm
    finally:
        cleanup_dist_env_and_memory()
        torch.set_num_threads = set_threads
        torch.set_num_threads(threads)


def video_request(processor, video: torch.Tensor, question: str) -> dict:
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


def _prompt_logprob_diff(out, reference, inputs: dict) -> float:
    """Max |vLLM - reference| prompt logprob; also checks both tokenised the prompt identically."""
    with torch.no_grad():
        logits = reference(**inputs).logits[0].float()
    ids = inputs["input_ids"][0]
    assert list(out.prompt_token_ids) == ids.tolist()
    ref = torch.log_softmax(logits[:-1], dim=-1).gather(-1, ids[1:, None])[:, 0].numpy()
    got = np.array([next(iter(lp.values())).logprob for lp in out.prompt_logprobs[1:]])
    return float(np.abs(got - ref).max())


def _reference_tokens(reference, inputs: dict, max_tokens: int) -> list[int]:
    with torch.no_grad():
        tokens = reference.generate(
            **inputs, max_new_tokens=max_tokens, min_new_tokens=max_tokens, do_sample=False, repetition_penalty=1.05
        )
    return tokens[0, inputs["input_ids"].shape[1] :].tolist()


def _greedy(max_tokens: int):
    from vllm import SamplingParams

    # The checkpoint's generation_config sets repetition_penalty 1.05; both sides use it explicitly.
    return SamplingParams(
        temperature=0.0, max_tokens=max_tokens, prompt_logprobs=0, ignore_eos=True, repetition_penalty=1.05
    )


def video_parity(llm, reference, processor, video: torch.Tensor, question: str) -> tuple[float, bool]:
    """(max prompt logprob difference, generated tokens equal) of vLLM against the reference on one video."""
    (out,) = llm.generate([video_request(processor, video, question)], _greedy(MAX_TOKENS), use_tqdm=False)
    inputs = build_inputs(processor, [video], question, fps=FPS)
    diff = _prompt_logprob_diff(out, reference, inputs)
    return diff, list(out.outputs[0].token_ids) == _reference_tokens(reference, inputs, MAX_TOKENS)


def image_parity(llm, reference, processor, image: torch.Tensor, question: str) -> tuple[float, bool]:
    """(max prompt logprob difference, generated tokens equal) on one [3, H, W] uint8 image."""
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}]
    prompt = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    size = identity_size_bounds(*image.shape[-2:])
    request = {
        "prompt": prompt,
        "multi_modal_data": {"image": image.permute(1, 2, 0).numpy()},
        "mm_processor_kwargs": {"size": size},
    }
    (out,) = llm.generate([request], _greedy(16), use_tqdm=False)
    inputs = processor(text=[prompt], images=[image], return_tensors="pt", images_kwargs={"size": size})
    inputs["image_tchw"] = [image.float() / 255.0]
    diff = _prompt_logprob_diff(out, reference, inputs)
    return diff, list(out.outputs[0].token_ids) == _reference_tokens(reference, inputs, 16)


# --- run in the engine's worker by ``apply_model`` ---


def _spatial_encoder_calls_of(model) -> int:
    return model.spatial_encoder_calls


def _class_name_of(model) -> str:
    return type(model).__name__


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


def spatial_encoder_calls(llm) -> int:
    return llm.apply_model(_spatial_encoder_calls_of)[0]


def served_class_name(llm) -> str:
    return llm.apply_model(_class_name_of)[0]


def parameter_count(llm) -> int:
    return llm.apply_model(_parameter_count_of)[0]


def load_checkpoint(llm, path: Path, drop: str | None = None, extra: dict | None = None) -> int:
    """Run the served model's ``load_weights`` on a checkpoint file; returns how many names were loaded."""
    return llm.apply_model(functools.partial(_load_into_fresh, path=str(path), drop=drop, extra=extra))[0]


def encoders_reused_on_repeat(llm, processor, seed: int) -> tuple[bool, bool, bool]:
    """(second question skips the spatial encoder, its prefix is cached, another video runs it once more)."""
    from vllm import SamplingParams

    from model_plugin.reference.demo import synthetic_video

    video = synthetic_video(frames=16, height=112, width=140, seed=seed)  # 160 video tokens: many full KV blocks
    params = SamplingParams(temperature=0.0, max_tokens=4)
    llm.generate([video_request(processor, video, "How many chairs?")], params, use_tqdm=False)
    calls = spatial_encoder_calls(llm)
    (second,) = llm.generate([video_request(processor, video, "Where is the door?")], params, use_tqdm=False)
    reused = spatial_encoder_calls(llm) == calls
    other = synthetic_video(frames=16, height=112, width=140, seed=seed + 1)
    llm.generate([video_request(processor, other, "How many chairs?")], params, use_tqdm=False)
    return reused, second.num_cached_tokens > 0, spatial_encoder_calls(llm) == calls + 1

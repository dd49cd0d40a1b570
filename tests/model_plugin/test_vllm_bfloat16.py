"""Both architectures served in bfloat16 (``vllm.LLM(dtype="bfloat16")``, the dtype of every GPU deployment and of
the original's inference) on the tiny checkpoints: the dtype of each part pinned inside the engine, greedy tokens
and prompt logprobs against the reference model run in bfloat16 under the same rules, and vLLM's memory-profiling
pass sending the largest video the server's caps allow through VGGT and the connector.

The engine is configured from the caps exactly as ``spatial-mllm-serve`` configures it (``engine_defaults``).
"""

from __future__ import annotations

import time
from argparse import Namespace
from pathlib import Path

import dtype_probe
import numpy as np
import pytest
import torch
import vllm_parity as parity

from model_plugin.reference import Qwen2_5_VL_VGGTForConditionalGeneration, SpatialMLLMForConditionalGeneration
from model_plugin.reference.demo import synthetic_video
from model_plugin.reference.inference import build_inputs
from server.runtime.launcher import engine_defaults
from server.runtime.settings import ServerSettings

pytestmark = pytest.mark.engine

ARCHS = {"v1.1": SpatialMLLMForConditionalGeneration, "v1.0": Qwen2_5_VL_VGGTForConditionalGeneration}
SERVED_ARCHS = ["v1.1", "v1.0"]
# Caps small enough for the tiny model on a CPU; the largest video is 16 frames of 112 x 112.
CAPS = ServerSettings(
    max_num_frames=16, default_num_frames=8, max_pixels_per_frame=112 * 112, min_pixels_per_frame=56 * 56
)
LARGEST_VIDEO = (16, 112, 112)
# (frames, height, width): even and odd counts, square and not.
VIDEOS = [(4, 112, 140), (3, 84, 112), (16, 84, 56)]
MAX_TOKENS = 32
# bfloat16 on both sides, but different kernels (vLLM's CPU attention and fused RMSNorm vs transformers' eager
# ones). Measured on v1.1 (tiny, loaded 2-core CPU): max prompt logprob difference 0.033, 0.026, 0.033 on the three
# videos; greedy tokens equal 11/32, 32/32 and 0/32: the tiny random model's near-tied logits flip the greedy choice
# (even the first token of the 16-frame video), so token agreement is printed, not asserted.
PROMPT_LOGPROB_TOLERANCE = 0.1


def engine_options(caps: ServerSettings) -> dict:
    """The multimodal limits ``spatial-mllm-serve`` gives vLLM for these caps, the image's bounded like a frame.

    The server bounds videos by its caps but leaves a single image to vLLM's processor (up to 12.8 MP, 16,384
    tokens); vLLM profiles the modality with the most tokens, so with these small caps it would profile a 3584 x
    3584 image (which on this CPU would run the tiny VGGT over 131k tokens). The image's dummy is bounded here so
    that the pass exercises the video path; at the default caps (64 frames of 756 x 756, 23,328 tokens) the video
    is the larger item anyway.
    """
    args = Namespace(limit_mm_per_prompt=None, generation_config="vllm", override_generation_config=None)
    engine_defaults(args, caps)
    limits = args.limit_mm_per_prompt
    video = limits["video"]
    limits["image"] = {**limits["image"], "width": video["width"], "height": video["height"]}
    return {"limit_mm_per_prompt": limits}


@pytest.fixture(scope="module", params=SERVED_ARCHS)
def arch(request) -> str:
    return request.param


@pytest.fixture(scope="module")
def checkpoint(arch: str, tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    if arch == "v1.1":
        return tiny_checkpoint
    from model_plugin.tiny import write_tiny_checkpoint

    return write_tiny_checkpoint(tmp_path_factory.mktemp("tiny-v1.0-bf16"), seed=0, arch="v1.0")


@pytest.fixture(scope="module")
def llm(checkpoint: Path):
    start = time.perf_counter()
    with parity.engine(checkpoint, "bfloat16", **engine_options(CAPS)) as engine:
        print(f"\nbf16 tiny engine start: {time.perf_counter() - start:.1f} s")
        yield engine


@pytest.fixture(scope="module")
def reference_bf16(arch: str, checkpoint: Path):
    return ARCHS[arch].from_pretrained(checkpoint, dtype=torch.bfloat16).eval()


def test_every_part_runs_in_bfloat16_inside_the_engine(llm, processor) -> None:
    """Weights, inputs and outputs of the VGGT aggregator, the connector (merger), the ViT and the LLM."""
    assert all(llm.apply_model(dtype_probe.install))
    video = synthetic_video(frames=4, height=112, width=140, seed=11)
    llm.generate([parity.video_request(processor, video, "How many chairs?")], parity._greedy(2), use_tqdm=False)
    (records,) = llm.apply_model(dtype_probe.read)
    print(f"\nbf16 engine, dtypes per part: {records}")
    # the LLM's weights only: vLLM calls its decoder stack without module hooks firing (its inputs and outputs are
    # pinned on the bf16 reference, test_dtype_rules.py)
    assert records["llm"]["weights"] == ["bfloat16"], records["llm"]
    for part in ("vggt_aggregator", "connector", "vit"):
        assert records[part]["calls"] == ["yes"], part
        assert records[part]["weights"] == ["bfloat16"], f"{part} weights: {records[part]['weights']}"
        assert records[part]["outputs"] == ["bfloat16"], f"{part} outputs: {records[part]['outputs']}"
        # the ViT may receive raw uint8 pixels (vLLM's device-side normalisation) instead of bfloat16 ones
        allowed_inputs = (["bfloat16"], []) if part == "vit" else (["bfloat16"],)
        assert records[part]["inputs"] in allowed_inputs, f"{part} inputs: {records[part]['inputs']}"
    for part in ("vggt_aggregator", "connector"):  # ours: plain torch modules, no CPU kernel in between
        assert "cpu_kernel_bias" not in records[part], part


@pytest.mark.parametrize("shape", VIDEOS, ids=lambda s: "x".join(map(str, s)))
def test_bfloat16_against_the_bfloat16_reference(llm, reference_bf16, processor, shape, arch) -> None:
    frames, height, width = shape
    video = synthetic_video(frames=frames, height=height, width=width, seed=sum(shape))
    question = "How many chairs are in the room?"
    (out,) = llm.generate(
        [parity.video_request(processor, video, question)], parity._greedy(MAX_TOKENS), use_tqdm=False
    )
    inputs = build_inputs(processor, [video], question, fps=parity.FPS)
    diff = parity._prompt_logprob_diff(out, reference_bf16, inputs)
    got = list(out.outputs[0].token_ids)
    want = parity._reference_tokens(reference_bf16, inputs, MAX_TOKENS)
    prefix = next((i for i, (a, b) in enumerate(zip(got, want, strict=True)) if a != b), len(want))
    print(
        f"\n[bf16 {arch} {'x'.join(map(str, shape))}] max prompt logprob diff {diff:.4f}; "
        f"greedy tokens equal {sum(a == b for a, b in zip(got, want, strict=True))}/{len(want)}, prefix {prefix}"
    )
    assert diff < PROMPT_LOGPROB_TOLERANCE, f"max prompt logprob difference {diff:.3g}"


def _profile_with_probe(worker) -> dict:
    """Run vLLM's memory-profiling pass (the one that sizes the KV cache on a GPU) with hooks recording what
    reaches the spatial encoder and the connector."""
    model = worker.model_runner.get_model()
    parts = dtype_probe.parts_of(model)
    seen: dict = {"aggregator": [], "connector_rows": []}

    def on_aggregator(_module, args, kwargs) -> None:
        seen["aggregator"].append(list(args[0].shape))  # [B, S, 3, H, W]

    def on_connector(_module, args, kwargs, output) -> None:
        out = output[0] if isinstance(output, (list, tuple)) else output
        seen["connector_rows"].append(int(np.prod(out.shape[:-1])))

    handles = [parts["vggt_aggregator"][0].register_forward_pre_hook(on_aggregator, with_kwargs=True)]
    handles.append(parts["connector"][-1].register_forward_hook(on_connector, with_kwargs=True))
    try:
        worker.model_runner.profile_run()
    finally:
        for handle in handles:
            handle.remove()
    return seen


def test_memory_profile_runs_the_largest_video_through_vggt_and_the_connector(llm) -> None:
    """vLLM sizes the KV cache after a profiling pass with dummy inputs; that pass must run the spatial encoder on
    the largest video a request may bring (frames x pixels of the server's caps), or the KV cache would take the
    memory VGGT's activations need at the first large video."""
    (seen,) = llm.collective_rpc(_profile_with_probe)
    assert seen["aggregator"], "the profiling pass never reached the spatial encoder"
    frames, height, width = LARGEST_VIDEO
    largest = max(seen["aggregator"], key=lambda s: s[1] * s[3] * s[4])
    print(f"\nprofiling pass: aggregator inputs {seen['aggregator']}, connector rows {seen['connector_rows']}")
    assert largest[1:] == [frames, 3, height, width]
    tokens_per_video = frames // 2 * (height // 28) * (width // 28)
    assert max(seen["connector_rows"]) >= tokens_per_video

"""The vLLM plugin on the tiny v1.0 checkpoint (``Qwen2_5_VL_VGGTForConditionalGeneration``): token and logprob
parity with the v1.0 reference, encoder-cache reuse, weight loading. One ``vllm.LLM`` for the whole module."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
import torch
import vllm_parity as parity

from model_plugin.reference import Qwen2_5_VL_VGGTForConditionalGeneration
from model_plugin.reference.demo import synthetic_video

pytestmark = pytest.mark.engine

# (frames, height, width): even and odd counts, square and not.
VIDEOS = [(4, 112, 140), (3, 84, 112), (16, 84, 56)]


@pytest.fixture(scope="module")
def llm(tiny_checkpoint_v1_0: Path):
    start = time.perf_counter()
    with parity.engine(tiny_checkpoint_v1_0) as engine:
        print(f"\nv1.0 tiny engine start: {time.perf_counter() - start:.1f} s")
        yield engine


@pytest.fixture(scope="module")
def reference(tiny_checkpoint_v1_0: Path):
    return Qwen2_5_VL_VGGTForConditionalGeneration.from_pretrained(tiny_checkpoint_v1_0).eval()


def test_served_class_is_v1_0(llm) -> None:
    assert parity.served_class_name(llm) == "Qwen2_5_VL_VGGTForConditionalGeneration"


@pytest.mark.parametrize("shape", VIDEOS, ids=lambda s: "x".join(map(str, s)))
def test_video_parity_with_reference(llm, reference, processor, shape) -> None:
    video = synthetic_video(frames=shape[0], height=shape[1], width=shape[2], seed=sum(shape))
    max_diff, same_tokens = parity.video_parity(llm, reference, processor, video, "How many chairs are in the room?")
    print(f"\nv1.0 video {shape}: max prompt logprob difference {max_diff:.3g}")
    assert max_diff < 1e-3, f"max prompt logprob difference {max_diff:.3g}"
    assert same_tokens


def test_image_parity_with_reference(llm, reference, processor) -> None:
    """An image is one VGGT frame whose tokens the merger duplicates, as the v1.0 original's images path."""
    image = synthetic_video(frames=1, height=112, width=84, seed=5)[0]
    max_diff, same_tokens = parity.image_parity(llm, reference, processor, image, "What is this?")
    print(f"\nv1.0 image: max prompt logprob difference {max_diff:.3g}")
    assert max_diff < 1e-3, f"max prompt logprob difference {max_diff:.3g}"
    assert same_tokens


def test_repeated_video_reuses_the_encoders(llm, processor) -> None:
    assert parity.encoders_reused_on_repeat(llm, processor, seed=42) == (True, True, True)


def test_vggt_heads_are_skipped(llm, tiny_checkpoint_v1_0: Path) -> None:
    """The checkpoint holds camera, point and depth heads (and the original's track head): none is loaded."""
    track = {"vggt.track_head.feature_extractor.norm.weight": torch.ones(4)}
    assert parity.load_checkpoint(llm, tiny_checkpoint_v1_0, extra=track) == parity.parameter_count(llm)


@pytest.mark.parametrize(
    "dropped", ["vggt.aggregator.camera_token", "vggt_embedding_merger.vgg_to_language_mlp.2.bias"]
)
def test_missing_spatial_weight_is_a_clear_error(llm, tiny_checkpoint_v1_0: Path, dropped: str) -> None:
    with pytest.raises(Exception, match="lacks Spatial-MLLM weights: " + re.escape(dropped)):
        parity.load_checkpoint(llm, tiny_checkpoint_v1_0, drop=dropped)

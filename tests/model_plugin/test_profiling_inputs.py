"""vLLM's profiling pass gets the largest video the caps allow (frames x size), so the KV cache is sized after VGGT
has run on it. Built with the real processor of the tiny checkpoint; no engine starts."""

from __future__ import annotations

from pathlib import Path

import pytest
from vllm.engine.arg_utils import EngineArgs
from vllm.multimodal import MULTIMODAL_REGISTRY

from model_plugin.registration import register


def _processor(checkpoint: Path, **limits):
    register()
    config = EngineArgs(
        model=str(checkpoint), dtype="float32", max_model_len=4096, limit_mm_per_prompt=limits or None
    ).create_engine_config()
    return MULTIMODAL_REGISTRY.create_processor(config.model_config)


def _video_grid(processor, seq_len: int | None = None) -> list[int]:
    """The (t, h, w) patch grid of the profiling pass's dummy video."""
    options = processor.info.ctx.model_config.get_multimodal_config().limit_per_prompt
    inputs = processor.dummy_inputs
    if seq_len is None:
        mm = processor.get_dummy_mm_inputs({"video": 1})
        return mm["mm_kwargs"].get_data()["video_grid_thw"].tolist()[0]
    data = inputs.get_dummy_mm_data(seq_len, {"video": 1}, options)
    frames, height, width, _ = data["video"][0][0].shape
    return [frames, height, width]


@pytest.mark.parametrize(("frames", "height", "width"), [(16, 112, 112), (8, 84, 140), (32, 56, 56)])
def test_the_profiling_video_is_the_caps_largest(tiny_checkpoint: Path, frames: int, height: int, width: int) -> None:
    caps = {"video": {"count": 1, "num_frames": frames, "width": width, "height": height}}
    grid = _video_grid(_processor(tiny_checkpoint, **caps))
    assert grid == [frames // 2, height // 14, width // 14]


def test_frames_stop_where_the_context_is_full(tiny_checkpoint: Path) -> None:
    """64 frames at 112x112 are 512 video tokens: a 256-token budget holds 32 of them."""
    caps = {"video": {"count": 1, "num_frames": 64, "width": 112, "height": 112}}
    assert _video_grid(_processor(tiny_checkpoint, **caps), seq_len=256) == [32, 112, 112]


def test_without_full_caps_the_video_is_qwens(tiny_checkpoint: Path) -> None:
    """Frames alone (no size) leave Qwen2.5-VL's own dummy video, as vLLM builds it."""
    processor = _processor(tiny_checkpoint, video={"count": 1, "num_frames": 16})
    width, height = processor.info.get_image_size_with_most_features()
    expected = processor.info.get_num_frames_with_most_features(4096, {"video": 1})
    assert _video_grid(processor, seq_len=4096) == [min(expected, 16), height, width]

"""The HF processor built from its parts (model_plugin/hf_processor.py) is the one vLLM's own path builds: same
configuration, same chat template, vLLM's tokenizer, same outputs; arguments that change how a processor is built
still go through vLLM's path. Real processors of the tiny checkpoint; no engine starts."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from transformers import Qwen2_5_VLProcessor
from vllm.engine.arg_utils import EngineArgs
from vllm.multimodal import MULTIMODAL_REGISTRY

from model_plugin.hf_processor import SpatialProcessingInfo, processor_from_parts
from model_plugin.registration import register

PROMPT = "<|im_start|>user\n<|vision_start|><|video_pad|><|vision_end|>How many chairs?<|im_end|>\n"


def _info(checkpoint: Path, **mm_processor_kwargs) -> SpatialProcessingInfo:
    register()
    config = EngineArgs(
        model=str(checkpoint), dtype="float32", max_model_len=4096, mm_processor_kwargs=mm_processor_kwargs or None
    ).create_engine_config()
    info = MULTIMODAL_REGISTRY.create_processor(config.model_config).info
    assert isinstance(info, SpatialProcessingInfo)
    return info


def _vllms_own(info: SpatialProcessingInfo, **kwargs) -> Qwen2_5_VLProcessor:
    """What vLLM's Qwen2.5-VL info builds: its get_hf_processor, skipping our override."""
    return super(SpatialProcessingInfo, info).get_hf_processor(**kwargs)


def _described(processor: Qwen2_5_VLProcessor) -> dict:
    """Everything that configures a processor, tokenizer aside (compared by identity)."""
    return {
        "processor": json.loads(processor.to_json_string()),
        "image_processor": processor.image_processor.to_dict(),
        "video_processor": processor.video_processor.to_dict(),
        "chat_template": processor.chat_template,
    }


@pytest.fixture(scope="module")
def info(tiny_checkpoint: Path) -> SpatialProcessingInfo:
    return _info(tiny_checkpoint)


def test_the_processor_from_parts_is_vllms_own_with_vllms_tokenizer(info: SpatialProcessingInfo) -> None:
    ours, theirs = info.get_hf_processor(), _vllms_own(info)
    assert ours is not theirs, "the override was not taken"
    assert type(ours) is type(theirs) is Qwen2_5_VLProcessor
    assert ours.tokenizer is theirs.tokenizer is info.ctx.tokenizer
    assert _described(ours) == _described(theirs)
    assert ours.chat_template, "the checkpoint's chat template was not read"


def test_it_processes_a_video_exactly_as_vllms_own(info: SpatialProcessingInfo) -> None:
    frames = np.random.default_rng(0).integers(0, 256, size=(4, 84, 112, 3), dtype=np.uint8)
    call = {"text": [PROMPT], "videos": [frames], "return_tensors": "pt", "fps": 1.0, "do_sample_frames": False}
    ours, theirs = info.get_hf_processor()(**call), _vllms_own(info)(**call)
    assert ours.keys() == theirs.keys()
    for key in theirs:
        assert (ours[key] == theirs[key]).all(), key


def test_call_time_arguments_keep_the_one_processor(info: SpatialProcessingInfo) -> None:
    built = info.get_hf_processor()
    assert info.get_hf_processor(fps=2.0, do_sample_frames=False, num_frames=8) is built
    assert info.get_hf_processor() is built, "built once per info"


def test_a_construction_argument_goes_through_vllms_path(tiny_checkpoint: Path) -> None:
    """``mm_processor_kwargs`` that are not call-time arguments (``max_pixels`` is not, in transformers 5) change
    how vLLM builds the processor: its path."""
    info = _info(tiny_checkpoint, max_pixels=50176)
    processor = info.get_hf_processor()
    assert processor is not info._processor_from_parts
    assert processor is _vllms_own(info)  # vLLM's cached processor
    longest = processor.image_processor.size["longest_edge"]
    assert longest == 50176 != info._processor_from_parts.image_processor.size["longest_edge"]


def test_a_processor_with_a_part_it_does_not_know_is_left_to_transformers(tiny_checkpoint: Path) -> None:
    class WithAudio(Qwen2_5_VLProcessor):
        def __init__(self, image_processor=None, tokenizer=None, video_processor=None, feature_extractor=None):
            super().__init__(image_processor, tokenizer, video_processor)

    assert processor_from_parts(WithAudio, str(tiny_checkpoint), tokenizer=object()) is None

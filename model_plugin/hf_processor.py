"""Qwen2.5-VL's Hugging Face processor, built around the tokenizer vLLM has already loaded.

vLLM 0.32 gets a model's processor with ``processor_cls.from_pretrained(path, tokenizer=vllm_tokenizer)``, after a
first load with default arguments that only tells it which arguments are call-time ones. transformers 5 then still
loads a tokenizer of its own from disk, deep-copying vLLM's (151k-entry vocab and merges) through its keyword
arguments on the way, and drops it for vLLM's: about 9 s a process on two cores, and vLLM does it in each of its
three processes (API, engine core, worker) at every start. :func:`processor_from_parts` builds the same processor
from the parts ``from_pretrained`` would end with (its sub-processors, vLLM's tokenizer, the processor config and
chat template, all read by transformers itself) without the throw-away tokenizer.

:class:`SpatialProcessingInfo` serves it where vLLM's own path would build exactly that processor: the
checkpoint on disk (a local folder, or the snapshot of a Hub id's non-weight files that vLLM's path loads from too)
and only call-time arguments (the frame rate, sampling flags, ...). Anything else (an argument that changes how the
processor is built, a processor part this does not know) goes to vLLM's path unchanged.
``tests/model_plugin/test_hf_processor.py`` checks the two give equal processors and equal outputs.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Any

from transformers import AutoImageProcessor, AutoVideoProcessor, Qwen2_5_VLProcessor
from transformers.processing_utils import ProcessorMixin
from vllm.model_executor.models.qwen2_5_vl import Qwen2_5_VLProcessingInfo
from vllm.transformers_utils.processor import get_processor_kwargs_keys, get_processor_kwargs_type
from vllm.transformers_utils.repo_utils import get_non_weight_snapshot_path

# The processor parts this builds itself, with the Auto class transformers loads each primary part with.
PART_LOADERS = {"image_processor": AutoImageProcessor, "video_processor": AutoVideoProcessor}


def processor_from_parts(
    processor_cls: type[ProcessorMixin], checkpoint: str, tokenizer: Any, **load_kwargs: Any
) -> ProcessorMixin | None:
    """``processor_cls.from_pretrained(checkpoint, tokenizer=tokenizer, **load_kwargs)`` without loading a tokenizer.

    None when ``processor_cls`` has a part other than the tokenizer and :data:`PART_LOADERS`' parts, or names a
    legacy ``<part>_class``: transformers' own path then knows better.
    """
    parts = []
    for part in processor_cls.get_attributes():
        if part == "tokenizer":
            parts.append(tokenizer)
        elif part in PART_LOADERS and not hasattr(processor_cls, f"{part}_class"):
            parts.append(PART_LOADERS[part].from_pretrained(checkpoint, **load_kwargs))
        else:
            return None
    processor_dict, init_kwargs = processor_cls.get_processor_dict(checkpoint, **load_kwargs)
    return processor_cls.from_args_and_dict(parts, processor_dict, **init_kwargs)


class SpatialProcessingInfo(Qwen2_5_VLProcessingInfo):
    """vLLM's Qwen2.5-VL processing info whose HF processor is built once per info, from its parts (module doc)."""

    def get_hf_processor(self, **kwargs: object):
        processor = self._processor_from_parts
        if processor is None or self._changes_construction(processor, kwargs):
            return super().get_hf_processor(**kwargs)
        return processor

    @cached_property
    def _processor_from_parts(self) -> ProcessorMixin | None:
        model_config = self.ctx.model_config
        tokenizer = self.ctx.tokenizer
        # the folder vLLM's own path loads from: a local checkpoint as it is, a Hub id's snapshot of its non-weight
        # files (the id itself where none can be made, which is left to vLLM's path)
        checkpoint = get_non_weight_snapshot_path(model_config.model, revision=model_config.revision)
        if tokenizer is None or not Path(checkpoint).is_dir():
            return None
        return processor_from_parts(
            Qwen2_5_VLProcessor, checkpoint, tokenizer, trust_remote_code=model_config.trust_remote_code
        )

    def _changes_construction(self, processor: ProcessorMixin, kwargs: dict[str, object]) -> bool:
        """Whether vLLM would build a processor with these arguments (merged with the model's configured ones)
        rather than pass them at call time: vLLM keeps only the names outside the processor's call arguments."""
        merged = self.ctx.get_merged_mm_kwargs(kwargs)
        merged.pop("tokenizer", None)
        call_time = get_processor_kwargs_keys(get_processor_kwargs_type(processor))
        return any(name not in call_time for name in merged)

"""The transformers reference models: the oracles for the vLLM plugin, the test checkpoint writer and the
baseline the benchmarks compare against (v1.1 ``SpatialMLLMForConditionalGeneration``, v1.0
``Qwen2_5_VL_VGGTForConditionalGeneration``)."""

from model_plugin.reference.modeling import SpatialMLLMForConditionalGeneration
from model_plugin.reference.modeling_v1_0 import Qwen2_5_VL_VGGTForConditionalGeneration

__all__ = ["Qwen2_5_VL_VGGTForConditionalGeneration", "SpatialMLLMForConditionalGeneration"]

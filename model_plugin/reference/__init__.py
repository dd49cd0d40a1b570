"""The transformers reference model: the oracle for the vLLM plugin, the test checkpoint writer and the
baseline the benchmarks compare against."""

from model_plugin.reference.modeling import SpatialMLLMForConditionalGeneration

__all__ = ["SpatialMLLMForConditionalGeneration"]

"""The vLLM plugin entry point: declared in the package metadata, idempotent, lazy."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import entry_points

from model_plugin.config import V1_0_ARCHITECTURE
from model_plugin.registration import ARCHITECTURE, MODEL_CLASS_PATH, MODEL_CLASS_PATHS, register


def test_entry_point_is_declared() -> None:
    plugins = {ep.name: ep.value for ep in entry_points(group="vllm.general_plugins")}
    assert plugins.get("spatial_mllm") == "model_plugin.registration:register"


def test_register_is_idempotent_and_lazy() -> None:
    """Registering twice is harmless, and neither the model module nor CUDA is touched by registering."""
    code = f"""
import sys
from model_plugin.registration import register
register(); register()
from vllm import ModelRegistry
from transformers import AutoConfig
assert {ARCHITECTURE!r} in ModelRegistry.get_supported_archs()
assert {V1_0_ARCHITECTURE!r} in ModelRegistry.get_supported_archs()
assert "model_plugin.vllm_model" not in sys.modules
assert "model_plugin.vllm_model_v1_0" not in sys.modules
import torch
assert not torch.cuda.is_initialized()
from model_plugin.config import SpatialMLLMConfig
assert AutoConfig.for_model("spatial-mllm").__class__ is SpatialMLLMConfig
print("ok")
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().endswith("ok")


def test_model_class_path_points_at_the_model() -> None:
    module, _, name = MODEL_CLASS_PATH.partition(":")
    assert module == "model_plugin.vllm_model" and name == ARCHITECTURE
    register()


def test_each_architecture_resolves_to_its_class_and_plain_qwen_to_vllms() -> None:
    """v1.0's model_type is plain ``qwen2_5_vl``: only ``architectures`` tells it apart, so both must resolve."""
    from vllm import ModelRegistry
    from vllm.model_executor.models.qwen2_5_vl import Qwen2_5_VLForConditionalGeneration

    from model_plugin.vllm_model import SpatialMLLMForConditionalGeneration
    from model_plugin.vllm_model_v1_0 import Qwen2_5_VL_VGGTForConditionalGeneration

    register()
    assert set(MODEL_CLASS_PATHS) == {ARCHITECTURE, V1_0_ARCHITECTURE}
    resolved = {
        arch: ModelRegistry._try_load_model_cls(arch)
        for arch in (*MODEL_CLASS_PATHS, "Qwen2_5_VLForConditionalGeneration")
    }
    assert resolved[ARCHITECTURE] is SpatialMLLMForConditionalGeneration
    assert resolved[V1_0_ARCHITECTURE] is Qwen2_5_VL_VGGTForConditionalGeneration
    assert resolved["Qwen2_5_VLForConditionalGeneration"] is Qwen2_5_VLForConditionalGeneration

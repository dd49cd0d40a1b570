"""The vLLM plugin entry point: declared in the package metadata, idempotent, lazy."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import entry_points

from model_plugin.registration import ARCHITECTURE, MODEL_CLASS_PATH, register


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
assert "model_plugin.vllm_model" not in sys.modules
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

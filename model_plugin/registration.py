"""The ``vllm.general_plugins`` entry point: teaches vLLM and transformers the Spatial-MLLM architecture.

vLLM calls ``register()`` in the API process, the engine core and every (spawned) worker, so it must be
idempotent and cheap: the model class is registered as a lazy ``"module:Class"`` string and importing this
module touches neither CUDA nor vLLM's model code.
"""

from __future__ import annotations

ARCHITECTURE = "SpatialMLLMForConditionalGeneration"
MODEL_CLASS_PATH = "model_plugin.vllm_model:SpatialMLLMForConditionalGeneration"


def register() -> None:
    """Register the ``spatial-mllm`` config with transformers and the model class with vLLM."""
    from vllm import ModelRegistry

    from model_plugin.config import register_with_transformers

    register_with_transformers()
    if ARCHITECTURE not in ModelRegistry.get_supported_archs():
        ModelRegistry.register_model(ARCHITECTURE, MODEL_CLASS_PATH)

"""The ``vllm.general_plugins`` entry point: teaches vLLM and transformers both Spatial-MLLM architectures.

vLLM calls ``register()`` in the API process, the engine core and every (spawned) worker, so it must be
idempotent and cheap: the model classes are registered as lazy ``"module:Class"`` strings and importing this
module touches neither CUDA nor vLLM's model code. vLLM picks the class from the config's ``architectures``,
so a plain Qwen2.5-VL checkpoint (``Qwen2_5_VLForConditionalGeneration``) still gets vLLM's own class.

- v1.1 ``SpatialMLLMForConditionalGeneration`` (Diankun/Spatial-MLLM-v1.1-Instruct-135K): model_type
  ``spatial-mllm``, keys ``spatial_encoder.*`` and ``connector.*``;
- v1.0 ``Qwen2_5_VL_VGGTForConditionalGeneration`` (Diankun/Spatial-MLLM-subset-sft): model_type ``qwen2_5_vl``,
  keys ``vggt.*`` and ``vggt_embedding_merger.*``.
"""

from __future__ import annotations

from model_plugin.config import V1_0_ARCHITECTURE

ARCHITECTURE = "SpatialMLLMForConditionalGeneration"
MODEL_CLASS_PATH = "model_plugin.vllm_model:SpatialMLLMForConditionalGeneration"
MODEL_CLASS_PATHS = {
    ARCHITECTURE: MODEL_CLASS_PATH,
    V1_0_ARCHITECTURE: f"model_plugin.vllm_model_v1_0:{V1_0_ARCHITECTURE}",
}


def register() -> None:
    """Register the ``spatial-mllm`` config with transformers and both model classes with vLLM."""
    from vllm import ModelRegistry

    from model_plugin.config import register_with_transformers

    register_with_transformers()
    supported = ModelRegistry.get_supported_archs()
    for architecture, class_path in MODEL_CLASS_PATHS.items():
        if architecture not in supported:
            ModelRegistry.register_model(architecture, class_path)

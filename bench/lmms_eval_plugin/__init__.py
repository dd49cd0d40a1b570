"""Spatial-MLLM as an lmms-eval model (``--model spatial_mllm``), registered through lmms-eval's entry points.

``pyproject.toml`` declares ``[project.entry-points."lmms_eval.models"] spatial_mllm = ...:manifest``, so once this
package is installed beside lmms-eval (``pip install --no-deps .`` into lmms-eval's environment is enough: the
model class talks HTTP only), ``python -m lmms_eval --model spatial_mllm --model_args base_url=...`` finds it.
"""

from __future__ import annotations

MODEL_ID = "spatial_mllm"


def manifest():
    """lmms-eval's registration payload (imported only by lmms-eval, so lmms-eval is not our dependency)."""
    from lmms_eval.models.registry_v2 import ModelManifest

    return ModelManifest(model_id=MODEL_ID, chat_class_path="bench.lmms_eval_plugin.model.SpatialMLLM")

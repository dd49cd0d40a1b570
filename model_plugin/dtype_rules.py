"""In which dtype each part computes: the original's rules, kept here in bfloat16 (and in any ``--dtype``).

Read from diankun-wu/Spatial-MLLM (master = v1.1, v1.0). Its inference scripts (``src/inference.py``; v1.0
``scripts/inference.py`` and ``evaluate/model.py``, ``torch_dtype="auto"``) load the whole model in bfloat16 and
run it with no autocast; its space-aware sampling (``src/sampling/sa_sampling.py``) keeps VGGT in float32 and runs
it on bfloat16 frames under bfloat16 autocast, and VGGT's own ``forward`` turns autocast off around its heads.

Serving (vLLM, both architectures; the transformers references follow the same rules):

| part                             | weights     | computes in                                   |
| -------------------------------- | ----------- | --------------------------------------------- |
| frames for VGGT                  | -           | float32 ``/ 255``, then cast to model dtype   |
| VGGT aggregator                  | model dtype | model dtype                                   |
| connector (v1.1) / merger (v1.0) | model dtype | model dtype; RMSNorm's statistics in float32  |
| fusion (ViT + connector delta)   | -           | model dtype                                   |
| Qwen ViT                         | model dtype | model dtype (vLLM's Qwen2.5-VL)               |
| LLM                              | model dtype | model dtype (vLLM's Qwen2)                    |

As the original: frames are ``video_tchw.type(visual.dtype)``; in the aggregator the ImageNet mean/std are cast to
the frames' dtype, RoPE angles are computed in float32 and cast before cos/sin, DINO's position embedding is
interpolated in float32 and cast back, LayerNorm and SDPA get model-dtype tensors; the connectors' RMSNorm
(Qwen2RMSNorm) normalises in float32 and casts back before its weight; Linear and GELU run in model dtype. The
ViT's and LLM's own upcasts (RMSNorm, rotary) are vLLM's, as transformers' are in the original.

The space-aware geometry pass (``sampling.geometry``, with the pass dtype bfloat16 as on a GPU):

| part            | weights | computes in                                                     |
| --------------- | ------- | --------------------------------------------------------------- |
| frames          | -       | float32 ``/ 255``, then cast to bfloat16                        |
| VGGT aggregator | float32 | autocast(bfloat16): Linear, conv, SDPA bfloat16; stream float32 |
| point head      | float32 | float32, autocast off                                           |
| selection       | -       | float32                                                         |

As ``sa_sampling.py``: ``images.to(device, dtype=bfloat16)``, ``autocast(dtype=bfloat16)`` around ``vggt(images)``,
and VGGT's forward runs its heads under ``autocast(enabled=False)``. In the aggregator the token stream is float32
(``cat`` with the float32 camera, register and cls tokens promotes it; LayerScale's float32 gamma keeps it) and
LayerNorm runs in float32 (autocast's rule), so the point head reads float32 layers.

With the pass dtype float32 (the CPU default) everything is float32. Nothing here casts a tensor the original
does not: the VGGT port relies on the same type promotion, so the two regimes fall out of the weights' and
frames' dtypes plus :func:`aggregator_autocast` and :func:`heads_full_precision`.
"""

from __future__ import annotations

import torch


def aggregator_autocast(device_type: str, dtype: torch.dtype) -> torch.autocast:
    """sa_sampling's autocast around VGGT, in ``dtype``; a no-op context for float32."""
    return torch.autocast(device_type, dtype=dtype, enabled=dtype != torch.float32)


def heads_full_precision(device_type: str) -> torch.autocast:
    """VGGT's ``autocast(enabled=False)`` around its heads: they run in their weights' dtype (float32)."""
    return torch.autocast(device_type, enabled=False)

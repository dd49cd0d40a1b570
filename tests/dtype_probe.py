"""Forward hooks that record in which dtype each part of a Spatial-MLLM model runs: its weights, the floating
tensors it receives and returns. Used on the transformers references in-process and, through ``apply_model``
(module-level functions pickle by reference), on the model inside a vLLM engine.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

import torch
from torch import nn


def _float_dtypes(values: Iterable[object]) -> set[str]:
    found: set[str] = set()
    for value in values:
        if isinstance(value, torch.Tensor):
            if value.is_floating_point():
                found.add(str(value.dtype).removeprefix("torch."))
        elif isinstance(value, (list, tuple)):
            found |= _float_dtypes(value)
        elif isinstance(value, dict):
            found |= _float_dtypes(value.values())
        elif hasattr(value, "last_hidden_state"):  # transformers' ModelOutput
            found |= _float_dtypes(v for v in value.values() if isinstance(v, torch.Tensor))
    return found


def parts_of(model: nn.Module) -> dict[str, list[nn.Module]]:
    """The parts whose dtype the rules fix, for either architecture (vLLM class or reference)."""
    if hasattr(model, "language_model"):  # vLLM: its forward calls the decoder stack, not the ForCausalLM
        visual, llm = model.visual, model.language_model.model
    else:  # transformers reference
        visual, llm = model.model.visual, model.model.language_model
    if hasattr(model, "connector"):  # v1.1
        aggregator = model.spatial_encoder.vggt_model.aggregator
        connector = [model.connector.ln_q, model.connector.mlp]
    else:  # v1.0
        aggregator = model.vggt.aggregator
        connector = [model.vggt_embedding_merger]
    return {"vggt_aggregator": [aggregator], "connector": connector, "vit": [visual], "llm": [llm]}


def install(model: nn.Module) -> bool:
    """Hook every part; records go to ``model._dtype_probe`` (part -> weights / inputs / outputs dtypes)."""
    records: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    model._dtype_probe = records
    model._dtype_probe_handles = []
    for part, modules in parts_of(model).items():
        for module in modules:
            for sub in module.modules():
                # vLLM's CPU GEMM kernels (``cpu_linear``, set after loading) take a float32 bias whatever the model
                # dtype; a CPU artefact, recorded apart (the CUDA path keeps the bias in the model dtype).
                cpu_kernel = hasattr(sub, "cpu_linear")
                for name, param in sub.named_parameters(recurse=False):
                    key = "cpu_kernel_bias" if cpu_kernel and name == "bias" else "weights"
                    records[part][key].add(str(param.dtype).removeprefix("torch."))

            def hook(_module, args, kwargs, output, part=part) -> None:
                records[part]["inputs"] |= _float_dtypes([*args, kwargs])
                records[part]["pixel_inputs"] |= {
                    str(a.dtype).removeprefix("torch.")
                    for a in args
                    if isinstance(a, torch.Tensor) and a.dtype == torch.uint8
                }
                records[part]["outputs"] |= _float_dtypes([output])
                records[part]["calls"].add("yes")

            model._dtype_probe_handles.append(module.register_forward_hook(hook, with_kwargs=True))
    return True


def read(model: nn.Module) -> dict[str, dict[str, list[str]]]:
    """The records so far, as plain sorted lists."""
    return {part: {k: sorted(v) for k, v in rec.items()} for part, rec in model._dtype_probe.items()}

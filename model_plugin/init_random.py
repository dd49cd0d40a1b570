"""Random weights that make parity tests meaningful: nothing is zero or one by construction.

The rules are the ones the shared golden fixtures were drawn with: layer-scale gammas and norm weights
U(0.5, 1.5), norm biases N(0, 0.1), linear/conv weights N(0, 1/sqrt(fan_in)) with biases N(0, 0.05), raw
parameters (tokens, positional embeddings) N(0, 1). Default initialisations (ones, zeros, 0.01 layer scales)
would hide a missing norm, bias or layer scale from any comparison.
"""

from __future__ import annotations

import math

import torch
from torch import nn

_CONV_TRANSPOSE = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)


def is_norm(module: nn.Module) -> bool:
    """A normalisation layer (its weight scales, its bias shifts)."""
    return isinstance(module, nn.LayerNorm | nn.GroupNorm) or "norm" in type(module).__name__.lower()


def _fan_in(module: nn.Module, weight: torch.Tensor) -> int:
    if isinstance(module, _CONV_TRANSPOSE):
        return module.in_channels
    if isinstance(module, _CONV):
        return weight[0].numel()
    return weight.shape[-1]


def _draw(module: nn.Module, name: str, param: torch.Tensor, gen: torch.Generator, raw_std: float) -> torch.Tensor:
    shape = param.shape
    if name == "gamma" or (is_norm(module) and name == "weight"):
        return torch.rand(shape, generator=gen) + 0.5
    if is_norm(module) and name == "bias":
        return torch.randn(shape, generator=gen) * 0.1
    if isinstance(module, (nn.Linear, *_CONV, *_CONV_TRANSPOSE)):
        if name == "weight":
            return torch.randn(shape, generator=gen) / math.sqrt(_fan_in(module, param))
        return torch.randn(shape, generator=gen) * 0.05
    return torch.randn(shape, generator=gen) * raw_std


def parameter_owners(model: nn.Module) -> dict[str, tuple[nn.Module, str]]:
    """Full parameter name -> (the module that owns it, its local name)."""
    owners = {}
    for module_name, module in model.named_modules():
        for name, _ in module.named_parameters(recurse=False):
            owners[f"{module_name}.{name}" if module_name else name] = (module, name)
    return owners


@torch.no_grad()
def randomize_(model: nn.Module, seed: int, raw_std: dict[str, float] | None = None) -> nn.Module:
    """Overwrite every parameter in ``named_parameters`` order with one seeded generator; returns ``model``.

    ``raw_std`` maps full parameter names to the std of their raw normal draw (default 1.0).
    """
    gen = torch.Generator().manual_seed(seed)
    raw_std = raw_std or {}
    owners = parameter_owners(model)
    for full_name, param in model.named_parameters():
        module, name = owners[full_name]
        value = _draw(module, name, param, gen, raw_std.get(full_name, 1.0))
        param.copy_(value.to(param.dtype))
    return model

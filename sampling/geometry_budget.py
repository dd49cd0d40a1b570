"""Memory arithmetic of one space-aware VGGT pass, so a budget can be checked before anything loads.

One pass holds, at its peak (no autograd):

- the weights (aggregator + point head), float32 whatever the pass dtype;
- the input images: uint8 received, float32 in [0, 1], and the cast to the pass dtype;
- aggregator activations over all ``T`` candidates (global attention spans them all, so this part cannot be
  chunked): the running tokens, the four kept layers the point head reads (each ``2 * embed_dim`` wide) and a
  block's transient (qkv, attention output, the 4x MLP hidden): about ``15 * T * P * embed_dim`` elements, with
  ``P`` patches + 5 special tokens per frame (memory-efficient attention, as SDPA uses on a GPU);
- the point head, ``chunk`` frames at a time at full resolution (about ``2 * features`` channels per pixel live);
- the outputs: world points and confidence, in the pass dtype and again in float32.

These are estimates from the network's shapes, deliberately on the high side; on a GPU the worker also caps its
allocator at the budget (``torch.cuda.set_per_process_memory_fraction``), so an underestimate fails one pass with a
503, never the engine beside it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from safetensors import safe_open

from sampling.geometry import NEEDED_PARTS, VGGT_INPUT_WIDTH, VGGT_PATCH, source_config, source_files

SPECIAL_TOKENS = 5  # camera token + 4 registers per frame
AGGREGATOR_LIVE_WIDTHS = 15  # running tokens (1) + four kept layers of 2C (8) + a block's transient (6)
MAX_CHUNK = 16  # point-head frames per step; more buys nothing measurable
WORST_HEIGHT = VGGT_INPUT_WIDTH  # a square video: 518 x 518 after the seed's preprocessing (the largest input)
# Bytes per element a pass holds, by pass dtype. A bfloat16 pass keeps float32 weights, token stream, kept layers
# and point head, as the original's space-aware sampling (model_plugin.dtype_rules); only a block's transients are
# bfloat16, so planning it as float32 stays on the high side.
DTYPE_BYTES = {"float32": 4, "bfloat16": 4, "float16": 4}
DEFAULT_POINT_FEATURES = 256


@dataclass(frozen=True)
class GeometryShape:
    """What the arithmetic needs of a VGGT: width, point-head features and the weight bytes on disk (fp32)."""

    embed_dim: int
    point_features: int
    weight_elements: int

    @classmethod
    def of(cls, source: Path) -> GeometryShape:
        """From a Spatial-MLLM checkpoint directory or a standalone VGGT file: headers only, no tensor is read."""
        config, prefix = source_config(source)
        elements = 0
        for file in source_files(source):
            with safe_open(str(file), framework="pt") as handle:
                for key in handle.keys():  # noqa: SIM118 - safe_open handles are not iterable
                    if key.startswith(prefix) and key[len(prefix) :].startswith(NEEDED_PARTS):
                        shape = handle.get_slice(key).get_shape()
                        elements += _product(shape)
        features = (config.point_head_kwargs or {}).get("features", DEFAULT_POINT_FEATURES)
        return cls(config.embed_dim, int(features), elements)


def _product(shape: list[int]) -> int:
    total = 1
    for n in shape:
        total *= int(n)
    return total


def pass_bytes(shape: GeometryShape, frames: int, height: int, width: int, chunk: int, dtype_bytes: int) -> int:
    """Estimated peak bytes of one pass on ``frames`` candidates of ``height`` x ``width`` (VGGT input size)."""
    pixels = height * width
    tokens = frames * ((height // VGGT_PATCH) * (width // VGGT_PATCH) + SPECIAL_TOKENS)
    weights = shape.weight_elements * dtype_bytes
    images = frames * 3 * pixels * (1 + 4 + dtype_bytes)
    aggregator = AGGREGATOR_LIVE_WIDTHS * tokens * shape.embed_dim * dtype_bytes
    kept = 8 * tokens * shape.embed_dim * dtype_bytes  # still held while the point head runs
    head = min(chunk, frames) * 2 * shape.point_features * pixels * dtype_bytes
    outputs = frames * pixels * 4 * (dtype_bytes + 4)
    return weights + images + max(aggregator, kept + head + outputs)


def largest_chunk(shape: GeometryShape, frames: int, height: int, width: int, budget: int, dtype_bytes: int) -> int:
    """The most point-head frames per step that keep the pass within ``budget`` bytes; 0 when even one does not."""
    for chunk in range(min(MAX_CHUNK, frames), 0, -1):
        if pass_bytes(shape, frames, height, width, chunk, dtype_bytes) <= budget:
            return chunk
    return 0


def worst_case_bytes(shape: GeometryShape, candidates: int, dtype_bytes: int) -> int:
    """What a pass on the largest input needs at one point-head frame per step: the least budget that serves
    every video at ``candidates`` candidates."""
    return pass_bytes(shape, candidates, WORST_HEIGHT, VGGT_INPUT_WIDTH, 1, dtype_bytes)

"""Write safetensors checkpoints one tensor (and one chunk) at a time, sharded as Hugging Face publishes them.

``safetensors.torch.save_file`` needs every tensor in memory at once; a full-size Spatial-MLLM is ~10 GB in
bfloat16, more than a shared build machine can hold beside everything else. The format allows streaming: the
header only needs names, dtypes and shapes, which are known before any value exists, and the data section is the
tensors' bytes back to back in header order. So each shard's header is written first, then each tensor's bytes as
its producer yields them, and the producer never has to hold more than one chunk.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

SAFETENSORS_DTYPES = {torch.bfloat16: "BF16", torch.float16: "F16", torch.float32: "F32"}
INDEX_NAME = "model.safetensors.index.json"
SINGLE_FILE_NAME = "model.safetensors"
HEADER_ALIGNMENT = 8  # the format pads the JSON header with spaces so the data section starts aligned


@dataclass(frozen=True)
class TensorSpec:
    """One tensor of the checkpoint: its key and shape (the dtype is the checkpoint's)."""

    name: str
    shape: tuple[int, ...]

    def numel(self) -> int:
        total = 1
        for n in self.shape:
            total *= n
        return total


ChunkProducer = Callable[[TensorSpec], Iterable[torch.Tensor]]


def plan_shards(specs: list[TensorSpec], element_bytes: int, max_shard_bytes: int) -> list[list[TensorSpec]]:
    """Split ``specs`` (in order) into shards of at most ``max_shard_bytes`` data (a larger tensor gets its own)."""
    shards: list[list[TensorSpec]] = [[]]
    size = 0
    for spec in specs:
        nbytes = spec.numel() * element_bytes
        if shards[-1] and size + nbytes > max_shard_bytes:
            shards.append([])
            size = 0
        shards[-1].append(spec)
        size += nbytes
    return shards


def shard_header(specs: list[TensorSpec], dtype: torch.dtype, metadata: dict[str, str] | None = None) -> bytes:
    """The length prefix and padded JSON header of one safetensors file holding ``specs`` in order."""
    element_bytes = torch.empty((), dtype=dtype).element_size()
    header: dict[str, object] = {"__metadata__": dict(metadata or {"format": "pt"})}
    offset = 0
    for spec in specs:
        end = offset + spec.numel() * element_bytes
        header[spec.name] = {
            "dtype": SAFETENSORS_DTYPES[dtype],
            "shape": list(spec.shape),
            "data_offsets": [offset, end],
        }
        offset = end
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % HEADER_ALIGNMENT)
    return struct.pack("<Q", len(text)) + text


def _write_tensor(handle, spec: TensorSpec, chunks: Iterable[torch.Tensor], dtype: torch.dtype) -> int:
    written = 0
    for chunk in chunks:
        data = chunk.detach().to(dtype).contiguous().reshape(-1)
        written += data.numel()
        # bfloat16 has no numpy dtype: write the raw bytes through a same-width integer view
        handle.write(data.view(torch.int16 if data.element_size() == 2 else torch.int32).numpy().tobytes())
    if written != spec.numel():
        raise ValueError(f"{spec.name}: producer gave {written} elements, the header promised {spec.numel()}")
    return written


def write_safetensors(
    path: Path, specs: list[TensorSpec], produce: ChunkProducer, dtype: torch.dtype = torch.bfloat16
) -> None:
    """One safetensors file with ``specs`` in order; ``produce(spec)`` yields that tensor's values in chunks."""
    partial = path.with_name(path.name + ".partial")
    with partial.open("wb") as handle:
        handle.write(shard_header(specs, dtype))
        for spec in specs:
            _write_tensor(handle, spec, produce(spec), dtype)
    partial.replace(path)


def write_sharded_checkpoint(
    out_dir: Path,
    specs: list[TensorSpec],
    produce: ChunkProducer,
    dtype: torch.dtype = torch.bfloat16,
    max_shard_bytes: int = 4 * 2**30,
) -> list[Path]:
    """``model-0000i-of-0000n.safetensors`` + ``model.safetensors.index.json`` (one ``model.safetensors`` when
    everything fits one shard), as ``save_pretrained`` lays them out; returns the files written."""
    element_bytes = torch.empty((), dtype=dtype).element_size()
    shards = plan_shards(specs, element_bytes, max_shard_bytes)
    if len(shards) == 1:
        path = out_dir / SINGLE_FILE_NAME
        write_safetensors(path, shards[0], produce, dtype)
        return [path]
    written, weight_map = [], {}
    for number, shard in enumerate(shards, start=1):
        path = out_dir / f"model-{number:05d}-of-{len(shards):05d}.safetensors"
        write_safetensors(path, shard, produce, dtype)
        written.append(path)
        weight_map.update({spec.name: path.name for spec in shard})
    total = sum(spec.numel() for spec in specs) * element_bytes
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (out_dir / INDEX_NAME).write_text(json.dumps(index, indent=2))
    return written


def row_chunks(values: torch.Tensor, max_elements: int) -> Iterator[torch.Tensor]:
    """``values`` cut along its first dimension into pieces of at most ``max_elements`` (at least one row)."""
    if values.dim() == 0:
        yield values
        return
    row = max(1, values[0].numel())
    step = max(1, max_elements // row)
    for start in range(0, values.shape[0], step):
        yield values[start : start + step]

"""The geometry network for space-aware sampling: VGGT's aggregator and point head on candidate frames.

Preprocessing is the seed's (``sa_sampling.py``): portrait frames are turned 90 degrees clockwise, every frame is
resized (PIL bicubic) to width 518 with its height rounded to a multiple of 14, centre-cropped to 518 rows
when taller, and divided by 255. Only the aggregator layers the point head reads are computed, and the point
head runs ``frames_chunk_size`` frames at a time; global attention spans all candidates, so the aggregator
itself cannot be chunked over frames.

Weights come from the served Spatial-MLLM checkpoint (v1.1 ``spatial_encoder.vggt_model.*``, v1.0 ``vggt.*``: the
encoder was frozen in training, so its heads are VGGT-1B's) or from a standalone VGGT safetensors file
(``aggregator.*``, ``point_head.*``, ...).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from safetensors import safe_open

from model_plugin.spatial_config import V1_0_ARCHITECTURE, VGGTSpatialEncoderConfig, vggt_config_from_dict
from model_plugin.spatial_encoder import build_vggt
from model_plugin.vggt import VGGT

VGGT_INPUT_WIDTH = 518
VGGT_PATCH = 14
CHECKPOINT_PREFIX = "spatial_encoder.vggt_model."
V1_0_CHECKPOINT_PREFIX = "vggt."
NEEDED_PARTS = ("aggregator.", "point_head.")


def candidate_indices(num_frames: int, max_candidates: int = 128) -> np.ndarray:
    """The seed's candidates: ``min(max_candidates, n)`` indices from ``linspace(0, n - 1)``, truncated to int."""
    if num_frames <= 0:
        raise ValueError("a video with no frames has no candidates")
    return np.linspace(0, num_frames - 1, num=min(max_candidates, num_frames), dtype=int)


def vggt_input_size(height: int, width: int) -> tuple[int, int, bool]:
    """(height, width, rotated) of a frame after the seed's preprocessing, before the centre crop."""
    rotated = height > width
    if rotated:
        height, width = width, height
    new_height = round(height * (VGGT_INPUT_WIDTH / width) / VGGT_PATCH) * VGGT_PATCH
    return new_height, VGGT_INPUT_WIDTH, rotated


def preprocess_frames(frames: np.ndarray) -> torch.Tensor:
    """uint8 [T, H, W, 3] frames -> float32 [T, 3, h, 518] in [0, 1], exactly as the seed prepares VGGT input."""
    return to_unit_float(preprocess_frames_uint8(frames))


def to_unit_float(images: torch.Tensor) -> torch.Tensor:
    """The seed's last preprocessing step: uint8 -> float32 in [0, 1]."""
    return images.float() / 255.0


def preprocess_frames_uint8(frames: np.ndarray) -> torch.Tensor:
    """The seed's rotate/resize/crop, stopping before the division: uint8 [T, 3, h, 518] (a quarter of the
    float32 bytes, which is what crosses the process boundary to the geometry worker)."""
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"expected uint8 frames [T, H, W, 3], got {frames.dtype} {frames.shape}")
    new_height, new_width, rotated = vggt_input_size(frames.shape[1], frames.shape[2])
    # one writable buffer: PIL's arrays are read-only, and torch warns when it wraps one
    resized = np.empty((len(frames), new_height, new_width, 3), np.uint8)
    for i, frame in enumerate(frames):
        image = Image.fromarray(frame)
        if rotated:
            image = image.rotate(-90, expand=True)
        resized[i] = image.resize((new_width, new_height), Image.Resampling.BICUBIC)
    images = torch.from_numpy(resized).permute(0, 3, 1, 2)
    if new_height > VGGT_INPUT_WIDTH:
        top = (new_height - VGGT_INPUT_WIDTH) // 2
        images = images[:, :, top : top + VGGT_INPUT_WIDTH]
    return images


def checkpoint_vggt(config: dict) -> tuple[VGGTSpatialEncoderConfig, str]:
    """The VGGT sizes and key prefix of a Spatial-MLLM checkpoint's config.json: v1.0 (``vggt.*``, ``VGGT()``
    defaults unless our ``vggt_config`` says otherwise) or v1.1 (``spatial_encoder.vggt_model.*``)."""
    if V1_0_ARCHITECTURE in config.get("architectures", []):
        return vggt_config_from_dict(config.get("vggt_config")), V1_0_CHECKPOINT_PREFIX
    return vggt_config_from_dict(config.get("spatial_config")), CHECKPOINT_PREFIX


def source_config(source: Path) -> tuple[VGGTSpatialEncoderConfig, str]:
    """(VGGT sizes, key prefix) of a Spatial-MLLM checkpoint directory (v1.0 or v1.1, see
    :func:`checkpoint_vggt`) or of a standalone VGGT file (VGGT-1B sizes, no prefix)."""
    config_file = source / "config.json" if source.is_dir() else None
    if config_file is not None and config_file.exists():
        return checkpoint_vggt(json.loads(config_file.read_text()))
    return VGGTSpatialEncoderConfig(), ""


def source_files(source: Path) -> list[Path]:
    """The safetensors files of a checkpoint directory, or the one file given."""
    return sorted(source.glob("*.safetensors")) if source.is_dir() else [source]


def _load_state_streamed(vggt: torch.nn.Module, path: Path, prefix: str) -> tuple[list[str], list[str]]:
    """Copy the tensors under ``prefix`` (aggregator and point head) from one safetensors file or a sharded
    checkpoint directory into ``vggt``, one tensor at a time; returns (missing, unexpected) names.

    One at a time because at full size the whole state dict (1.9 GB in bfloat16) beside the float32 network
    (3.8 GB) was the process's peak, above any pass's, and pushed a full-size server on a 24 GB host into the
    out-of-memory killer.
    """
    targets = vggt.state_dict()
    seen: set[str] = set()
    unexpected: list[str] = []
    with torch.no_grad():
        for file in source_files(path):
            with safe_open(str(file), framework="pt") as handle:
                for key in handle.keys():  # noqa: SIM118 - safe_open handles are not iterable
                    name = key[len(prefix) :] if key.startswith(prefix) else None
                    if name is None or not name.startswith(NEEDED_PARTS):
                        continue
                    if name not in targets or tuple(targets[name].shape) != tuple(handle.get_slice(key).get_shape()):
                        unexpected.append(name)
                        continue
                    targets[name].copy_(handle.get_tensor(key))
                    seen.add(name)
    return sorted(set(targets) - seen), unexpected


@dataclass(frozen=True)
class GeometryNetwork:
    """A VGGT with aggregator and point head on its device, float32 weights, passes in ``dtype``.

    As the original's space-aware sampling: the weights stay float32 whatever ``dtype``; with ``dtype`` bfloat16
    the frames are cast to it and the aggregator runs under autocast, the point head in float32 with autocast off
    (the rules: ``model_plugin.dtype_rules``)."""

    vggt: VGGT
    device: torch.device
    dtype: torch.dtype

    @classmethod
    def load(
        cls,
        source: str | Path,
        device: str = "cpu",
        dtype: torch.dtype = torch.float32,
        config: VGGTSpatialEncoderConfig | None = None,
    ) -> GeometryNetwork:
        """From a Spatial-MLLM checkpoint directory of either architecture (its config gives the sizes) or a
        standalone VGGT safetensors file (VGGT-1B sizes unless ``config`` says otherwise)."""
        source = Path(source)
        found, prefix = source_config(source)
        config = config or found
        vggt = build_vggt(config, with_point_head=True)
        missing, unexpected = _load_state_streamed(vggt, source, prefix)
        if missing or unexpected:
            raise ValueError(
                f"{source} does not hold a VGGT aggregator and point head "
                f"(missing {len(missing)}: {missing[:3]}, unexpected {len(unexpected)}: {unexpected[:3]})"
            )
        torch_device = torch.device(device)
        return cls(vggt.to(torch_device, torch.float32).eval(), torch_device, dtype)

    @torch.no_grad()
    def world_points(self, images: torch.Tensor, frames_chunk_size: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
        """[T, 3, h, w] images in [0, 1] -> world points [T, h, w, 3] and confidence [T, h, w] (float32)."""
        batch = images.to(self.device, self.dtype)[None]
        points, conf = self.vggt.predict_world_points(batch, frames_chunk_size, autocast_dtype=self.dtype)
        return points[0].float(), conf[0].float()

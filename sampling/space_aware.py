"""Space-aware frame sampling (Spatial-MLLM): pick the frames whose 3D points cover the most of the scene.

The pipeline, as the paper's ``sa_sampling.py`` runs it: up to 128 uniformly spaced candidate frames, VGGT
preprocessing (:mod:`sampling.geometry`), the VGGT aggregator and point head predict world points and
confidences, and the greedy voxel cover (:mod:`sampling.voxel_cover`) keeps ``k`` of them. The selection math
is re-exported here so callers import one module; keeping it free of model code lets it be tested and
benchmarked without weights.

Where the geometry is useless (nothing passes the confidence mask) the server falls back to uniform frames
rather than failing the request; offline users can ask for the strict behaviour.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from sampling.geometry import GeometryNetwork, candidate_indices, preprocess_frames
from sampling.voxel_cover import (
    CoverageResult,
    Fallback,
    SpaceAwareSelectionError,
    coverage_select,
    select_frames,
    uniform_indices,
)

__all__ = [
    "CoverageResult",
    "SpaceAwareSelectionError",
    "coverage_select",
    "select_frames",
    "space_aware_indices",
    "uniform_indices",
]


class FrameSource(Protocol):
    """Anything that decodes frames by index (``sampling.decode.DecodedVideo``)."""

    def frames(self, indices: list[int]) -> np.ndarray: ...


def space_aware_indices(
    video: FrameSource,
    num_video_frames: int,
    k: int,
    network: GeometryNetwork,
    *,
    max_candidates: int = 128,
    frames_chunk_size: int = 8,
    fallback: Fallback = "uniform",
    top_up: bool = False,
) -> list[int]:
    """Sorted frame indices of the video (not of the candidates) chosen by voxel coverage."""
    candidates = candidate_indices(num_video_frames, max_candidates)
    images = preprocess_frames(video.frames([int(i) for i in candidates]))
    points, conf = network.world_points(images, frames_chunk_size=frames_chunk_size)
    chosen = select_frames(points, conf, min(k, len(candidates)), fallback=fallback, top_up=top_up)
    return [int(candidates[i]) for i in chosen]

"""Space-aware frame sampling (Spatial-MLLM): pick the frames whose 3D points cover the most of the scene.

The selection math lives in :mod:`sampling.voxel_cover` and is re-exported here, so callers import one
module. Running VGGT on the candidate frames to obtain the point maps is added here later; keeping the
geometry free of model code lets it be tested and benchmarked without weights.
"""

from __future__ import annotations

from sampling.voxel_cover import (
    CoverageResult,
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
    "uniform_indices",
]

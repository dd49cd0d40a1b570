"""Space-aware frame selection, the geometry-only half: voxel coverage and the greedy pick.

Spatial-MLLM's space-aware sampling runs VGGT on candidate frames, voxelises the confident world points and
greedily keeps the frames that cover the most new voxels. This module is that selection step only, with no
model code, so it can be tested against the golden fixtures and benchmarked on synthetic point maps.

The arithmetic follows the reference (``src/sampling/sa_sampling.py`` in diankun-wu/Spatial-MLLM) exactly:
float32 percentile threshold, float32 bounding box and voxel size, float32 ``floor``, greedy ties to the
lowest frame index, early stop at zero gain, sorted result. It is vectorised, with no Python per point or
per voxel: the threshold comes from one pass of compares and counts (not a full sort), each frame's masked
points are gathered once into one buffer that both the bounding box and the voxel pass read, voxels are
cells of a dense grid (compacted for huge grids), the frame x voxel incidence is a packed bitset, and each
greedy round scores every frame with one popcount. Every step is a few numpy calls per frame on arrays
sized to stay in cache; ``bench/bench_select_frames.py`` times it against a plain Python-set version.

Documented departures, where the reference crashes:

- no point passes the mask, or the masked points are not finite: :class:`SpaceAwareSelectionError`
  (``fallback="uniform"`` returns uniformly spaced frames instead);
- a flat masked cloud (zero extent on an axis): the voxel size is the smallest *non-zero* extent / 20; if
  every extent is zero (one distinct point) all points share one voxel and ``voxel_size`` is reported as 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

Fallback = Literal["none", "uniform"]

_F32 = np.float32
_CONF_FLOOR = _F32(0.1)  # the reference compares a float32 tensor with 0.1, i.e. with float32(0.1)
_VOXELS_PER_MIN_EXTENT = _F32(20)
_DENSE_BITS_LIMIT = 1 << 25  # frames x columns for a dense bool incidence before packing (32 MiB)
_LUT_GRID_LIMIT = 1 << 24  # grid cells for the lookup-table compaction (16 MiB bool + 64 MiB int32)
_SAMPLE_TARGET = 1 << 16  # sample size for the exact median's bracketing step
_CHUNK = 1 << 17  # elements per chunk in the median's counting pass (its temporaries stay in L2)
_TILE = 3072  # floats per row in 2-D views of [n, 3] points: long inner loops, each column one axis
_MINMAX_BATCH = 1 << 20  # gathered points per bounding-box reduction (12 MiB: still in L3)


class SpaceAwareSelectionError(ValueError):
    """The point maps give no usable geometry (nothing passes the confidence mask, or it is not finite)."""


@dataclass(frozen=True)
class CoverageResult:
    """Selection plus the intermediate values the golden fixtures record (for tests and debugging)."""

    selected: list[int]  # sorted ascending, as returned to callers
    greedy_order: list[int]  # the same frames in pick order
    greedy_gains: list[int]  # new voxels each pick added
    threshold: float  # the float32 50th percentile of the confidences
    bbox_min: tuple[float, float, float]
    bbox_max: tuple[float, float, float]
    voxel_size: float  # the float32 value used (0.0 when every masked point is the same point)
    mask_counts: np.ndarray  # int64 [T]: masked points per frame
    voxel_counts: np.ndarray  # int64 [T]: distinct voxels per frame
    union_voxels: int
    stopped_early: bool  # a round found no frame adding a voxel before k frames were picked

    @property
    def n_masked_points(self) -> int:
        return int(self.mask_counts.sum())


# --------------------------------------------------------------------------------------------------------
# inputs


def _to_float32_numpy(x: object, name: str) -> np.ndarray:
    """CPU float32 numpy view/copy of a numpy array or torch tensor (any device); exact for 16/32-bit."""
    if hasattr(x, "detach") and hasattr(x, "is_floating_point"):  # torch.Tensor, without importing torch
        if not x.is_floating_point():
            raise TypeError(f"{name} must be a floating-point tensor, got {x.dtype}")
        x = x.detach().cpu().float().numpy()  # .float(): bfloat16 has no numpy dtype
    arr = np.asarray(x)
    if arr.dtype != np.float32:
        if not np.issubdtype(arr.dtype, np.floating):
            raise TypeError(f"{name} must be a floating-point array, got {arr.dtype}")
        arr = arr.astype(np.float32)
    return arr


def _prepare(world_points: object, world_points_conf: object) -> tuple[np.ndarray, np.ndarray]:
    """Validate shapes; returns points [T, HW, 3] and confidences [T, HW], both C-contiguous float32."""
    pts = _to_float32_numpy(world_points, "world_points")
    conf = _to_float32_numpy(world_points_conf, "world_points_conf")
    # VGGT returns a leading batch of 1; accept it so callers can pass predictions unchanged.
    if pts.ndim == 5 and pts.shape[0] == 1:
        pts = pts[0]
    if conf.ndim == 4 and conf.shape[0] == 1:
        conf = conf[0]
    if pts.ndim != 4 or pts.shape[-1] != 3:
        raise ValueError(f"world_points must be [T, H, W, 3], got {tuple(pts.shape)}")
    if conf.shape != pts.shape[:-1]:
        raise ValueError(f"world_points_conf must be {tuple(pts.shape[:-1])}, got {tuple(conf.shape)}")
    t = pts.shape[0]
    return np.ascontiguousarray(pts).reshape(t, -1, 3), np.ascontiguousarray(conf).reshape(t, -1)


def uniform_indices(num_frames: int, k: int) -> list[int]:
    """``round(linspace(0, T-1, k))`` with k capped at T: the uniform-sampling rule, distinct indices."""
    k = min(k, num_frames)
    if k <= 0:
        return []
    return [int(i) for i in np.round(np.linspace(0, num_frames - 1, k))]


# --------------------------------------------------------------------------------------------------------
# threshold: numpy.percentile(conf, 50) exactly, in one cheap pass


def median_threshold(flat: np.ndarray) -> np.float32:
    """``np.percentile(flat, 50)`` (linear), bit for bit, at a fraction of its cost on large inputs.

    numpy interpolates between the two order statistics around rank (n-1)/2. We bracket them with a sorted
    strided sample, count what lies below and above the bracket in one chunked pass (two compares and two
    counts per chunk, no full-size temporaries), keep the ~2% of values inside it, select the rank there,
    and let numpy interpolate on a tiny array holding the same neighbours at the same fractional index. NaN
    is detected by the counts not adding up; it, and a bracket the sample missed, fall back to numpy on the
    full array, so the result is always numpy's.
    """
    n = flat.size
    if n < 4 * _SAMPLE_TARGET:
        return _F32(np.percentile(flat, 50))
    m, odd = divmod(n - 1, 2)  # virtual index m + 0.5*odd
    # Order statistics to keep so that a tiny array has the same neighbours and the same fraction:
    # odd n-1 (even n): [s_m, s_m+1] at index 0.5; even n-1 (odd n): [s_m-1, s_m, s_m+1] at index 1.
    r0, r1 = (m, m + 1) if odd else (m - 1, m + 1)
    sample = np.sort(flat[:: n // _SAMPLE_TARGET])
    ns = sample.size
    margin = 3.0 * math.sqrt(ns) + 2  # ~6 standard deviations of the sample rank
    a = sample[max(int(r0 / n * ns - margin), 0)]
    b = sample[min(int(r1 / n * ns + margin) + 1, ns - 1)]
    if a == a and b == b:  # not NaN
        n_ge = n_le = 0
        parts = []
        ge = np.empty(min(n, _CHUNK), dtype=bool)
        le = np.empty_like(ge)
        for start in range(0, n, _CHUNK):  # one read of the array; each chunk's passes stay in cache
            chunk = flat[start : start + _CHUNK]
            k = chunk.size
            at_least_a = np.greater_equal(chunk, a, out=ge[:k])
            at_most_b = np.less_equal(chunk, b, out=le[:k])
            n_ge += int(np.count_nonzero(at_least_a))
            n_le += int(np.count_nonzero(at_most_b))
            parts.append(_select_sparse(chunk, np.logical_and(at_least_a, at_most_b, out=at_least_a)))
        inside = np.concatenate(parts)
        below, above = n - n_ge, n - n_le  # a NaN fails both compares, so it is counted in both
        if below + above + inside.size == n and below <= r0 and n - above > r1:
            # One selection at rank m; its neighbours are the max/min of the two sides (partitioning for
            # several ranks at once costs a selection each).
            k = m - below
            part = np.partition(inside, k)
            small = [part[k]] if odd else [part[:k].max(), part[k]]
            small.append(part[k + 1 :].min())
            return _F32(np.percentile(np.array(small, dtype=_F32), 50))
    return _F32(np.percentile(flat, 50))


def _select_sparse(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``values[mask]`` for a sparse mask: find the 8-element blocks holding a hit first, then only those.

    flatnonzero costs about the same per element whatever the density, so scanning the mask as uint64
    words (8 elements each) and then only the blocks with a hit is ~3x cheaper at the ~2% density of the
    median's bracket.
    """
    body = mask.size // 8 * 8
    blocks = np.flatnonzero(mask[:body].view(np.uint64) != 0)  # nonzero is fastest on bool
    hit_blocks = values[:body].reshape(-1, 8).take(blocks, axis=0, mode="clip")
    hits = mask[:body].reshape(-1, 8).take(blocks, axis=0, mode="clip")
    picked = hit_blocks.reshape(-1).take(np.flatnonzero(hits), mode="clip")
    if body == mask.size:
        return picked
    return np.concatenate((picked, values[body:][mask[body:]]))


# --------------------------------------------------------------------------------------------------------
# voxelisation


def _reduce3(flat: np.ndarray, op: np.ufunc) -> np.ndarray:
    """Per-axis ``op.reduce`` of points stored flat (x0 y0 z0 x1 ...); length a multiple of 3, may be 0.

    Reducing [n, 3] along axis 0 gives numpy a length-3 inner loop, ~30x slower; rows of _TILE floats (a
    multiple of 3, so every column holds one axis) keep the loops long, then a few tiny folds finish.
    """
    for width in (_TILE, 192):
        body = flat.size // width * width
        if body:
            flat = np.concatenate((op.reduce(flat[:body].reshape(-1, width), axis=0), flat[body:]))
    return op.reduce(flat.reshape(-1, 3), axis=0, initial=np.inf if op is np.minimum else -np.inf)


def _gather_masked(
    pts: np.ndarray, conf: np.ndarray, threshold: np.float32
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """All masked points, frame after frame, plus frame offsets and the bounding box.

    Masked means ``(conf >= threshold) & (conf > 0.1)``. One gather per frame (flatnonzero + take, ~5x
    faster than boolean row indexing) writes straight into one buffer, so the voxel pass reads it back
    instead of masking and gathering again. The bounding box is reduced over batches of recently written
    frames (still in cache) to keep the number of small numpy calls down. The buffer is sized for every
    pixel but only the masked rows are ever touched (and paged in).
    """
    n_frames, n_pixels = conf.shape
    check_floor = not threshold > _CONF_FLOOR  # else conf >= threshold implies conf > 0.1
    rows = np.empty((conf.size, 3), dtype=_F32)
    starts = np.zeros(n_frames + 1, dtype=np.int64)
    mask = np.empty(n_pixels, dtype=bool)
    above_floor = np.empty(n_pixels, dtype=bool) if check_floor else mask
    lo = np.full(3, np.inf, _F32)
    hi = np.full(3, -np.inf, _F32)
    reduced = 0  # rows[:reduced] are already in lo/hi
    for t in range(n_frames):
        np.greater_equal(conf[t], threshold, out=mask)
        if check_floor:
            np.logical_and(mask, np.greater(conf[t], _CONF_FLOOR, out=above_floor), out=mask)
        idx = np.flatnonzero(mask)
        start = int(starts[t])
        end = start + idx.size
        starts[t + 1] = end
        pts[t].take(idx, axis=0, out=rows[start:end], mode="clip")  # in range; "clip" skips buffering
        if end - reduced >= _MINMAX_BATCH or t == n_frames - 1:
            batch = rows[reduced:end].reshape(-1)
            np.minimum(lo, _reduce3(batch, np.minimum), out=lo)
            np.maximum(hi, _reduce3(batch, np.maximum), out=hi)
            reduced = end
    return rows[: starts[-1]], starts, lo, hi


def _voxel_size(extent: np.ndarray) -> np.float32:
    """min extent / 20 in float32; zero extents are skipped (flat scenes); 0 when all extents are zero."""
    nonzero = extent[extent > 0]
    if nonzero.size == 0:
        return _F32(0.0)
    return _F32(nonzero.min() / _VOXELS_PER_MIN_EXTENT)


def _floor_ids(q: np.ndarray, lo: np.ndarray, vs: np.float32, out: np.ndarray | None = None) -> np.ndarray:
    """float32 ``floor((q - lo) / vs)`` as in the reference: exact integers, [n, 3], in ``out`` or in place.

    ``lo`` is the bounding-box minimum tiled to _TILE floats (:func:`_tiled`): ``q - lo`` then runs on rows
    of _TILE floats, where broadcasting a (3,) operand would give numpy a length-3 inner loop, about 4x
    slower. ``out`` lets the caller keep the result in a small reused buffer (in cache) instead of writing
    back over ``q``; fresh arrays would cost page faults.
    """
    src = q.reshape(-1)
    flat = src if out is None else out.reshape(-1)[: src.size]
    body = src.size // _TILE * _TILE
    np.subtract(src[:body].reshape(-1, _TILE), lo, out=flat[:body].reshape(-1, _TILE))
    np.subtract(src[body:], lo[: src.size - body], out=flat[body:])
    if vs > 0:
        np.divide(flat, vs, out=flat)
        np.floor(flat, out=flat)
    else:  # every extent is zero: all points coincide, one voxel
        flat.fill(0)
    return flat.reshape(-1, 3)


def _tiled(lo: np.ndarray) -> np.ndarray:
    """The (3,) bounding-box minimum repeated to _TILE floats, for :func:`_floor_ids`."""
    return np.tile(lo, _TILE // 3)


def _cell_keys(ids: np.ndarray, dims: tuple[int, int, int]) -> np.ndarray:
    """Row-major linear cell index ``(ix * dy + iy) * dz + iz`` (int64) of integer-valued float32 ids.

    Computed as one matrix-vector product, which is exact: every product and partial sum is an integer
    below the grid size, so below 2**24 (float32) or 2**53 (float64). Callers check the grid size.
    """
    weights = (dims[1] * dims[2], dims[2], 1)
    if math.prod(dims) <= 2**24:
        return (ids @ np.array(weights, np.float32)).astype(np.int64)
    return (ids.astype(np.float64) @ np.array(weights, np.float64)).astype(np.int64)


def _pack_rows(dense: np.ndarray) -> np.ndarray:
    """bool [T, C] -> uint64 [T, words], rows zero-padded to whole words."""
    n_frames, n_columns = dense.shape
    n_bytes = (n_columns + 7) // 8
    rows = np.zeros((n_frames, max((n_bytes + 7) // 8, 1) * 8), dtype=np.uint8)
    rows[:, :n_bytes] = np.packbits(dense, axis=1)
    return rows.view(np.uint64)


def _incidence(frames: list[np.ndarray], lo: np.ndarray, vs: np.float32, dims: tuple[int, int, int]) -> np.ndarray:
    """Packed frame x voxel incidence, uint64 [T, words]: bit c of row t is set when frame t sees voxel c.

    ``frames[t]`` holds frame t's masked points [n, 3]. Small grids (the usual room) use the grid cells
    themselves as columns, one frame at a time: ids into a reused buffer (in cache), keys by one
    matrix-vector product, and the keys marked straight into the frame's row (scattering True beats
    bincount). Larger grids overwrite the points with their ids and map occupied cells to 0..V-1 first.
    """
    n_frames = len(frames)
    n_cells = math.prod(dims)
    if n_cells <= 2**24 and n_frames * n_cells <= _DENSE_BITS_LIMIT:
        dense = np.zeros((n_frames, n_cells), dtype=bool)
        weights = np.array((dims[1] * dims[2], dims[2], 1), np.float32)
        lo_tiled = _tiled(lo)
        longest = max((q.shape[0] for q in frames), default=0)
        ids = np.empty((longest, 3), dtype=_F32)
        keys_f = np.empty(longest, dtype=_F32)
        keys = np.empty(longest, dtype=np.int64)
        for t, q in enumerate(frames):
            n = q.shape[0]
            np.matmul(_floor_ids(q, lo_tiled, vs, out=ids), weights, out=keys_f[:n])  # exact: see _cell_keys
            np.copyto(keys[:n], keys_f[:n], casting="unsafe")
            dense[t, :][keys[:n]] = True
        return _pack_rows(dense)
    lo_tiled = _tiled(lo)
    columns, n_columns = _compact_columns([_floor_ids(q, lo_tiled, vs) for q in frames], dims)
    if n_frames * n_columns <= _DENSE_BITS_LIMIT:
        dense = np.zeros((n_frames, n_columns), dtype=bool)
        for t, col in enumerate(columns):
            dense[t, :][col] = True
        return _pack_rows(dense)
    n_bytes = (n_columns + 7) // 8  # too big for a dense bool matrix: one scratch row, reset where touched
    rows = np.zeros((n_frames, (n_bytes + 7) // 8 * 8), dtype=np.uint8)
    scratch = np.zeros(n_columns, dtype=bool)
    for t, col in enumerate(columns):
        scratch[col] = True
        rows[t, :n_bytes] = np.packbits(scratch)
        scratch[col] = False
    return rows.view(np.uint64)


def _compact_columns(ids: list[np.ndarray], dims: tuple[int, int, int]) -> tuple[list[np.ndarray], int]:
    """Per-frame voxel ids mapped to 0..V-1 over the union: a lookup table, or one sort for huge grids."""
    n_cells = math.prod(dims)
    keys = [_cell_keys(frame_ids, dims) for frame_ids in ids] if n_cells <= 2**53 else None
    if keys is not None and n_cells <= _LUT_GRID_LIMIT:
        occupied = np.zeros(n_cells, dtype=bool)
        for key in keys:
            occupied[key] = True
        cells = np.flatnonzero(occupied)
        lut = np.empty(n_cells, dtype=np.int32)
        lut[cells] = np.arange(cells.size, dtype=np.int32)
        return [lut[key] for key in keys], int(cells.size)
    splits = np.cumsum([frame_ids.shape[0] for frame_ids in ids])[:-1]
    if keys is not None:
        uniq, inverse = np.unique(np.concatenate(keys), return_inverse=True)
    else:  # beyond 2**53 cells: unique rows of the float ids themselves
        uniq, inverse = np.unique(np.concatenate(ids), axis=0, return_inverse=True)
    return np.split(inverse.reshape(-1), splits), int(uniq.shape[0])


def _greedy(words: np.ndarray, k: int) -> tuple[list[int], list[int]]:
    """Greedy max coverage: most new voxels wins, ties to the lowest index, stop at zero gain."""
    covered = np.zeros(words.shape[1], dtype=np.uint64)
    order: list[int] = []
    gains: list[int] = []
    for _ in range(min(k, words.shape[0])):
        new = np.bitwise_count(words & ~covered).sum(axis=1, dtype=np.int64)
        best = int(np.argmax(new))  # first maximum = lowest frame index
        gain = int(new[best])
        if gain <= 0:
            break
        order.append(best)
        gains.append(gain)
        covered |= words[best]
    return order, gains


# --------------------------------------------------------------------------------------------------------
# entry points


def coverage_select(world_points: object, world_points_conf: object, k: int) -> CoverageResult:
    """The selection with its diagnostics. Raises :class:`SpaceAwareSelectionError` on no usable geometry."""
    if k <= 0:
        raise ValueError(f"k must be positive, got {k}")
    pts, conf = _prepare(world_points, world_points_conf)
    n_frames = pts.shape[0]
    threshold = median_threshold(conf.reshape(-1)) if conf.size else _F32(np.nan)

    # One pass over the maps: masked points of every frame into one buffer, per-frame counts, bounding box.
    rows, starts, lo, hi = _gather_masked(pts, conf, threshold)
    mask_counts = np.diff(starts)
    if not mask_counts.any():
        raise SpaceAwareSelectionError(
            f"no world point passes the confidence mask (conf >= p50 threshold {float(threshold)!r} "
            f"and conf > 0.1) in {n_frames} frames; space-aware selection has no geometry to cover"
        )
    if not (np.isfinite(lo).all() and np.isfinite(hi).all()):
        raise SpaceAwareSelectionError("masked world points are not finite (NaN or inf); cannot voxelise")

    extent = hi - lo
    vs = _voxel_size(extent)
    # Largest id per axis, computed like the ids themselves (floor is monotonic); +1 in Python ints, since
    # float32 cannot add 1 beyond 2**24.
    max_ids = np.floor(extent / vs) if vs > 0 else np.zeros(3, _F32)
    if not np.isfinite(max_ids).all():
        raise SpaceAwareSelectionError(f"degenerate voxel grid: extent {extent.tolist()} / size {vs!r}")

    # Voxel ids of the gathered points (the maps are not read again) -> incidence bitset -> greedy.
    dims = (int(max_ids[0]) + 1, int(max_ids[1]) + 1, int(max_ids[2]) + 1)
    frames = [rows[starts[t] : starts[t + 1]] for t in range(n_frames)]
    words = _incidence(frames, lo, vs, dims)
    order, gains = _greedy(words, k)
    voxel_counts = np.bitwise_count(words).sum(axis=1, dtype=np.int64)
    union_voxels = int(np.bitwise_count(np.bitwise_or.reduce(words, axis=0)).sum())
    return CoverageResult(
        selected=sorted(order),
        greedy_order=order,
        greedy_gains=gains,
        threshold=float(threshold),
        bbox_min=tuple(float(v) for v in lo),
        bbox_max=tuple(float(v) for v in hi),
        voxel_size=float(vs),
        mask_counts=mask_counts,
        voxel_counts=voxel_counts,
        union_voxels=union_voxels,
        stopped_early=len(order) < min(k, n_frames),
    )


def _top_up(selected: list[int], num_frames: int, k: int) -> list[int]:
    """Add uniformly spaced frames from the not-yet-chosen ones until min(k, T) frames are returned."""
    need = min(k, num_frames) - len(selected)
    if need <= 0:
        return selected
    chosen = set(selected)
    rest = [t for t in range(num_frames) if t not in chosen]
    extra = [rest[i] for i in uniform_indices(len(rest), need)]
    return sorted(selected + extra)


def select_frames(
    world_points: object,
    world_points_conf: object,
    k: int,
    *,
    fallback: Fallback = "none",
    top_up: bool = False,
) -> list[int]:
    """Indices (sorted) of up to ``k`` frames that together cover the most voxels of the scene.

    ``world_points`` is [T, H, W, 3] and ``world_points_conf`` [T, H, W] (a leading batch of 1 is
    accepted), numpy or torch on any device. As in the reference, fewer than ``k`` frames come back when no
    remaining frame adds a voxel; ``top_up=True`` fills up to ``min(k, T)`` with uniformly spaced unchosen
    frames. When the maps have no usable geometry, ``fallback="uniform"`` returns uniform indices and
    ``fallback="none"`` raises :class:`SpaceAwareSelectionError`.
    """
    if fallback not in ("none", "uniform"):
        raise ValueError(f"fallback must be 'none' or 'uniform', got {fallback!r}")
    try:
        selected = coverage_select(world_points, world_points_conf, k).selected
    except SpaceAwareSelectionError:
        if fallback == "none":
            raise
        return uniform_indices(_num_frames(world_points), k)
    return _top_up(selected, _num_frames(world_points), k) if top_up else selected


def _num_frames(world_points: object) -> int:
    shape = tuple(world_points.shape)  # type: ignore[attr-defined]
    return int(shape[1] if len(shape) == 5 else shape[0])

"""Space-aware frame selection: golden fixtures, a plain Python-set oracle, and the documented edge cases."""

from __future__ import annotations

import gc
import json

import numpy as np
import pytest
import torch
from conftest import fixture_path
from safetensors.numpy import load_file

from bench.bench_select_frames import (
    BASELINES,
    make_scene,
    measure,
    numpy_keys_select,
    original_select,
    plot,
    reference_greedy,
    reference_select,
    to_markdown,
)
from bench.protocol import Protocol
from sampling import voxel_cover
from sampling.space_aware import (
    CoverageResult,
    SpaceAwareSelectionError,
    coverage_select,
    select_frames,
    uniform_indices,
)

CASE_NAMES = ["s01", "s02", "s03", "s04", "s05", "s06"]


@pytest.fixture(scope="module")
def cases() -> dict:
    return json.loads(fixture_path("sa_sampling", "cases.json").read_text())["cases"]


def load_case(cases: dict, name: str) -> tuple[dict, dict[str, np.ndarray]]:
    case = cases[name]
    tensors = load_file(fixture_path("sa_sampling", case["file"]))
    return case, tensors


def case_inputs(tensors: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """[T, H, W, 3] and [T, H, W] float32: the fixture stores float16 with a batch of 1."""
    return tensors["world_points"][0].astype(np.float32), tensors["world_points_conf"][0].astype(np.float32)


# --------------------------------------------------------------------------------------------------------
# golden fixtures


def test_fixture_set_is_complete(cases: dict) -> None:
    assert sorted(cases) == CASE_NAMES


@pytest.mark.parametrize("name", CASE_NAMES)
def test_fixture_selection_and_diagnostics(cases: dict, name: str) -> None:
    case, tensors = load_case(cases, name)
    points, conf = case_inputs(tensors)
    result = coverage_select(points, conf, case["K"])
    assert isinstance(result, CoverageResult)

    assert result.selected == case["selected_frames"] == tensors["selected_frames"].tolist()
    assert result.greedy_order == case["greedy_order"] == tensors["greedy_order"].tolist()
    assert result.greedy_gains == case["greedy_gains"]
    assert len(result.selected) == case["n_selected"]
    assert result.stopped_early is case["stopped_early"]
    assert result.threshold == case["threshold_p50"]
    assert result.voxel_size == case["voxel_size"]
    assert list(result.bbox_min) == case["bbox_min"]
    assert result.mask_counts.tolist() == tensors["mask_counts"].tolist()
    assert result.n_masked_points == case["n_masked_points"]
    assert result.voxel_counts.tolist() == case["voxel_counts"] == tensors["voxel_counts"].tolist()
    assert result.union_voxels == case["union_voxels"]


@pytest.mark.parametrize("name", CASE_NAMES)
def test_fixture_select_frames_accepts_reference_layouts(cases: dict, name: str) -> None:
    """numpy float32, torch float16 with VGGT's batch of 1: the same selection."""
    case, tensors = load_case(cases, name)
    expected = case["selected_frames"]
    points, conf = case_inputs(tensors)
    assert select_frames(points, conf, case["K"]) == expected
    as_torch = torch.from_numpy(tensors["world_points"]), torch.from_numpy(tensors["world_points_conf"])
    assert select_frames(*as_torch, case["K"]) == expected


@pytest.mark.parametrize("baseline", ["plain", "unique-rows", "original", "numpy-keys"])
@pytest.mark.parametrize("name", CASE_NAMES)
def test_fixture_benchmark_baselines_agree(cases: dict, name: str, baseline: str) -> None:
    """The oracle and every benchmark baseline pick the original's frames on its golden cases."""
    case, tensors = load_case(cases, name)
    points, conf = case_inputs(tensors)
    select = {
        "plain": lambda: reference_select(points, conf, case["K"]),
        "unique-rows": lambda: reference_select(points, conf, case["K"], unique_rows=True),
        "original": lambda: original_select(points, conf, case["K"]),
        "numpy-keys": lambda: numpy_keys_select(points, conf, case["K"]),
    }[baseline]
    assert select() == case["selected_frames"]


# --------------------------------------------------------------------------------------------------------
# random scenes against the Python-set oracle


def blob_scene(seed: int, n_frames: int = 12, height: int = 9, width: int = 11) -> tuple[np.ndarray, np.ndarray]:
    """Random clustered points with duplicated frames (exact ties) and float16-valued confidences."""
    rng = np.random.default_rng(seed)
    centres = rng.uniform(-3, 3, size=(n_frames, 1, 1, 3))
    points = centres + rng.normal(0, rng.uniform(0.2, 1.5), size=(n_frames, height, width, 3))
    conf = 1 + np.exp(rng.normal(0, 1, size=(n_frames, height, width)))
    for dst in rng.choice(n_frames, size=n_frames // 3, replace=False):
        src = int(rng.integers(n_frames))
        points[dst], conf[dst] = points[src], conf[src]
    return points.astype(np.float32), conf.astype(np.float16).astype(np.float32)


SCENES = [("blob", seed) for seed in range(8)] + [("room", seed) for seed in range(3)]


def scene(kind: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
    return blob_scene(seed) if kind == "blob" else make_scene(10, 12, 16, seed=seed)


@pytest.mark.parametrize(("kind", "seed"), SCENES)
@pytest.mark.parametrize("k", [1, 4, 10, 15])
def test_random_scenes_match_python_set_oracle(kind: str, seed: int, k: int) -> None:
    points, conf = scene(kind, seed)
    assert select_frames(points, conf, k) == reference_select(points, conf, k)


@pytest.mark.parametrize(
    ("dense_limit", "lut_limit"),
    [(0, 1 << 24), (0, 0)],
    ids=["lookup-table-compaction", "sort-compaction-scratch-rows"],
)
@pytest.mark.parametrize(("kind", "seed"), SCENES[:4] + SCENES[-1:])
def test_compaction_paths_agree(
    monkeypatch: pytest.MonkeyPatch, dense_limit: int, lut_limit: int, kind: str, seed: int
) -> None:
    """The paths used for large voxel grids give the same result as the small-grid path."""
    points, conf = scene(kind, seed)
    expected = coverage_select(points, conf, 6)
    monkeypatch.setattr(voxel_cover, "_DENSE_BITS_LIMIT", dense_limit)
    monkeypatch.setattr(voxel_cover, "_LUT_GRID_LIMIT", lut_limit)
    got = coverage_select(points, conf, 6)
    assert got.greedy_order == expected.greedy_order
    assert got.voxel_counts.tolist() == expected.voxel_counts.tolist()
    assert got.union_voxels == expected.union_voxels


@pytest.mark.parametrize(("squash", "min_cells"), [(False, 2**24), (True, 2**53)], ids=["float64-keys", "unique-rows"])
def test_huge_grids_match_oracle(squash: bool, min_cells: int) -> None:
    """A confident far outlier (and a nearly flat scene) makes a grid of > 2**24 (> 2**53) cells."""
    rng = np.random.default_rng(7)
    points = rng.uniform(0, 4, size=(6, 5, 7, 3)).astype(np.float32)
    if squash:
        points[..., 2] *= 0.001
    points[2, 0, 0] = (1e4, 1e4, points[2, 0, 0, 2])
    conf = rng.uniform(1, 3, size=(6, 5, 7)).astype(np.float32)
    conf[2, 0, 0] = 10
    result = coverage_select(points, conf, 6)
    extent = np.array(result.bbox_max, np.float32) - np.array(result.bbox_min, np.float32)
    cells = np.prod(np.floor(extent / np.float32(result.voxel_size)).astype(np.float64) + 1)
    assert cells > min_cells
    assert result.selected == reference_select(points, conf, 6)


# --------------------------------------------------------------------------------------------------------
# full-size inputs: the sampled-bracket threshold and the single gather buffer


def large_scene(seed: int, n_frames: int = 6) -> tuple[np.ndarray, np.ndarray]:
    """A room scene with more than 4 x 65536 confidences, so the threshold takes the sampled-bracket path."""
    points, conf = make_scene(n_frames, 160, 320, seed=seed)
    assert conf.size > 4 * voxel_cover._SAMPLE_TARGET
    return points, conf


def assert_matches_numpy_and_oracle(points: np.ndarray, conf: np.ndarray, k: int) -> CoverageResult:
    result = coverage_select(points, conf, k)
    threshold = np.percentile(conf.reshape(-1), 50)
    assert np.float32(result.threshold).tobytes() == np.float32(threshold).tobytes()
    mask = (conf >= threshold) & (conf > np.float32(0.1))
    assert result.mask_counts.tolist() == mask.reshape(conf.shape[0], -1).sum(axis=1).tolist()
    valid = points[mask]
    assert list(result.bbox_min) == valid.min(axis=0).tolist()
    assert list(result.bbox_max) == valid.max(axis=0).tolist()
    assert result.selected == reference_select(points, conf, k)
    return result


@pytest.mark.parametrize("seed", [11, 12])
def test_large_scene_matches_numpy_and_oracle(seed: int) -> None:
    assert_matches_numpy_and_oracle(*large_scene(seed), k=4)


def test_large_scene_with_empty_frames_and_float16_ties() -> None:
    """Frames with no masked point (the last one too) and many confidences equal to the threshold."""
    points, conf = large_scene(13)
    conf = conf.astype(np.float16).astype(np.float32)
    conf[2] = 0.05
    conf[-1] = 0.0
    result = assert_matches_numpy_and_oracle(points, conf, k=6)
    assert result.mask_counts[2] == result.mask_counts[-1] == 0
    assert np.count_nonzero(conf == np.float32(result.threshold)) > 1


def test_large_scene_threshold_below_floor() -> None:
    """When the median is at most 0.1 the mask is decided by conf > 0.1."""
    points, conf = large_scene(14)
    conf = (conf - 1) * np.float32(0.04)
    result = assert_matches_numpy_and_oracle(points, conf, k=4)
    assert result.threshold <= 0.1


@pytest.mark.parametrize("size", [0, 1, 7, 8, 9, 1000, 4099])
@pytest.mark.parametrize("density", [0.0, 0.03, 0.5, 1.0])
def test_select_sparse_is_boolean_indexing(size: int, density: float) -> None:
    rng = np.random.default_rng(size)
    values = rng.normal(size=size).astype(np.float32)
    mask = rng.random(size) < density
    assert voxel_cover._select_sparse(values, mask).tolist() == values[mask].tolist()


@pytest.mark.parametrize("n_points", [0, 1, 63, 64, 65, 1023, 1024, 1025, 5000])
def test_reduce3_is_per_axis_min_max(n_points: int) -> None:
    rng = np.random.default_rng(n_points)
    points = rng.normal(size=(n_points, 3)).astype(np.float32)
    lo = voxel_cover._reduce3(points.reshape(-1), np.minimum)
    hi = voxel_cover._reduce3(points.reshape(-1), np.maximum)
    assert lo.dtype == hi.dtype == np.float32
    if n_points:
        assert lo.tolist() == points.min(axis=0).tolist()
        assert hi.tolist() == points.max(axis=0).tolist()
    else:
        assert lo.tolist() == [np.inf] * 3 and hi.tolist() == [-np.inf] * 3


# --------------------------------------------------------------------------------------------------------
# threshold


@pytest.mark.parametrize("n", [262_144, 262_145, 1_000_003, 1_000_000])
@pytest.mark.parametrize("kind", ["normal", "float16", "constant", "negative", "inf"])
def test_median_threshold_is_numpy_percentile(n: int, kind: str) -> None:
    rng = np.random.default_rng(n)
    flat = rng.normal(2, 1, size=n).astype(np.float32)
    if kind == "float16":
        flat = (1 + np.exp(flat)).astype(np.float16).astype(np.float32)
    elif kind == "constant":
        flat[:] = 1.5
    elif kind == "negative":
        flat -= 2
    elif kind == "inf":
        flat[rng.choice(n, n // 4, replace=False)] = np.inf
    got = voxel_cover.median_threshold(flat)
    want = np.percentile(flat, 50)
    assert got.dtype == np.float32
    assert got.tobytes() == np.float32(want).tobytes()


def test_median_threshold_nan_like_numpy() -> None:
    flat = np.random.default_rng(0).normal(size=300_001).astype(np.float32)
    flat[17] = np.nan
    assert np.isnan(voxel_cover.median_threshold(flat))


def test_median_threshold_biased_sample_falls_back_to_numpy() -> None:
    """When the strided sample misleads the bracket, the full numpy percentile decides."""
    flat = np.random.default_rng(1).normal(size=500_000).astype(np.float32)
    flat[:: flat.size // voxel_cover._SAMPLE_TARGET] = 100.0
    assert voxel_cover.median_threshold(flat) == np.percentile(flat, 50)


# --------------------------------------------------------------------------------------------------------
# edge cases the reference crashes on


def test_no_point_passes_the_mask_raises_typed_error() -> None:
    points = np.zeros((5, 3, 4, 3), np.float32)
    conf = np.full((5, 3, 4), 0.05, np.float32)  # median 0.05 passes the percentile, fails conf > 0.1
    with pytest.raises(SpaceAwareSelectionError, match="no world point passes"):
        select_frames(points, conf, 3)
    assert issubclass(SpaceAwareSelectionError, ValueError)


def test_no_point_passes_the_mask_uniform_fallback() -> None:
    points = np.zeros((10, 3, 4, 3), np.float32)
    conf = np.zeros((10, 3, 4), np.float32)
    assert select_frames(points, conf, 4, fallback="uniform") == [0, 3, 6, 9]
    assert select_frames(points, conf, 40, fallback="uniform") == list(range(10))


def test_non_finite_points_raise_or_fall_back() -> None:
    points, conf = blob_scene(3)
    points[1, 0, 0] = np.nan
    conf[1, 0, 0] = 100.0
    with pytest.raises(SpaceAwareSelectionError, match="not finite"):
        select_frames(points, conf, 3)
    assert select_frames(points, conf, 3, fallback="uniform") == uniform_indices(points.shape[0], 3)


def test_nan_confidence_behaves_like_numpy_percentile() -> None:
    points, conf = blob_scene(4)
    conf[0, 0, 0] = np.nan  # np.percentile -> NaN -> nothing passes
    with pytest.raises(SpaceAwareSelectionError):
        select_frames(points, conf, 3)


def flat_scene_expected(points: np.ndarray, conf: np.ndarray, k: int) -> tuple[list[int], float]:
    """Python-set oracle with the documented flat-scene rule: smallest non-zero extent / 20."""
    threshold = np.percentile(conf.reshape(-1), 50)
    mask = (conf >= threshold) & (conf > np.float32(0.1))
    lo, hi = points[mask].min(axis=0), points[mask].max(axis=0)
    extent = hi - lo
    voxel_size = extent[extent > 0].min() / np.float32(20)
    sets = [
        set(map(tuple, np.floor((points[t][mask[t]] - lo) / voxel_size).astype(np.int64).tolist()))
        for t in range(points.shape[0])
    ]
    return sorted(reference_greedy(sets, k)), float(voxel_size)


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_flat_scene_uses_smallest_nonzero_extent(axis: int) -> None:
    points, conf = blob_scene(5)
    points[..., axis] = 1.25
    expected, voxel_size = flat_scene_expected(points, conf, 5)
    result = coverage_select(points, conf, 5)
    assert result.voxel_size == voxel_size > 0
    assert result.selected == expected


def test_single_point_scene_is_one_voxel() -> None:
    points = np.full((6, 2, 3, 3), 0.5, np.float32)
    conf = np.ones((6, 2, 3), np.float32)
    conf[0] = 0.01  # frame 0 has no masked point: frame 1 is the first to add the single voxel
    result = coverage_select(points, conf, 4)
    assert result.voxel_size == 0.0
    assert result.union_voxels == 1
    assert result.selected == [1]
    assert result.stopped_early


def test_fewer_useful_frames_than_k_stops_early_or_tops_up() -> None:
    points, conf = blob_scene(6, n_frames=9)
    points[:] = points[4]  # every frame identical: frame 0 covers everything
    conf[:] = conf[4]
    assert select_frames(points, conf, 5) == [0]
    topped = select_frames(points, conf, 5, top_up=True)
    assert topped == [0, 1, 3, 6, 8]  # 0, then uniform over the unchosen frames 1..8
    assert select_frames(points, conf, 50, top_up=True) == list(range(9))


def test_top_up_keeps_greedy_frames() -> None:
    points, conf = blob_scene(2)
    greedy = select_frames(points, conf, 12)
    topped = select_frames(points, conf, 12, top_up=True)
    assert set(greedy) <= set(topped)
    assert topped == sorted(set(topped))
    assert len(topped) == 12


def test_k_at_least_t_returns_every_frame_that_adds_voxels() -> None:
    points, conf = blob_scene(1)
    result = coverage_select(points, conf, 100)
    assert result.selected == reference_select(points, conf, 100)
    assert all(gain > 0 for gain in result.greedy_gains)
    assert result.stopped_early == (len(result.selected) < points.shape[0])


@pytest.mark.parametrize("k", [0, -3])
def test_non_positive_k_raises(k: int) -> None:
    points, conf = blob_scene(0)
    with pytest.raises(ValueError, match="k must be positive"):
        select_frames(points, conf, k)


def test_bfloat16_tensors_are_widened_exactly() -> None:
    points, conf = blob_scene(9)
    t_points, t_conf = torch.from_numpy(points).bfloat16(), torch.from_numpy(conf).bfloat16()
    expected = select_frames(t_points.float().numpy(), t_conf.float().numpy(), 5)
    assert select_frames(t_points, t_conf, 5) == expected


def test_bad_arguments() -> None:
    points, conf = blob_scene(0)
    with pytest.raises(ValueError, match="fallback"):
        select_frames(points, conf, 3, fallback="random")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="world_points_conf"):
        select_frames(points, conf[:, :-1], 3)
    with pytest.raises(ValueError, match="world_points must be"):
        select_frames(points[..., :2], conf, 3)
    with pytest.raises(TypeError, match="floating-point"):
        select_frames(points.astype(np.int32), conf, 3)
    with pytest.raises(TypeError, match="floating-point"):
        select_frames(torch.from_numpy(points).int(), conf, 3)


@pytest.mark.parametrize(("t", "k"), [(10, 4), (16, 16), (5, 10), (7, 1), (100, 16), (33, 8)])
def test_uniform_indices_is_rounded_linspace(t: int, k: int) -> None:
    expected = np.round(np.linspace(0, t - 1, min(k, t))).astype(int).tolist()
    got = uniform_indices(t, k)
    assert got == expected
    assert len(set(got)) == len(got)


@pytest.mark.parametrize("gc_mode", ["paused", "on"])
def test_benchmark_script_smoke(gc_mode: str, tmp_path) -> None:
    gc_was_enabled = gc.isenabled()
    steady = Protocol(calibrate=lambda: 1.0)  # a machine whose speed never moves: no calibration loops, no reruns
    result = measure([4, 6], k=3, reps=1, sizes=[(12, 16)], baselines=BASELINES, gc_mode=gc_mode, protocol=steady)
    assert [row["frames"] for row in result["rows"]] == [4, 6]
    assert all(set(row["ms"]) == {"vectorised", *BASELINES} for row in result["rows"])
    assert all(len(times) == 1 for row in result["rows"] for times in row["samples_ms"].values())
    assert result["meta"]["gc"] == gc_mode and result["meta"]["torch_threads"] >= 1
    json.dumps(result)
    assert to_markdown(result).strip()
    assert gc.isenabled() == gc_was_enabled
    plot(result, tmp_path / "select.png")
    assert (tmp_path / "select.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

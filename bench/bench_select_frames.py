"""Benchmark: our vectorised space-aware selection vs the original's algorithm as it runs, and a numpy baseline.

Every contender computes the same selection (asserted on every scene); the ratio is the contender's median time
over ours. Rows:

* ``original``: the original's selection as its ``sa_sampling.py`` runs it, written here from its description
  (``/work/shared/fixtures/sa_sampling/README.md``), not from its code: numpy's median of the confidences, the
  mask and bounding box in torch, then per frame ``floor`` of the masked points, ``torch.unique(dim=0)`` of
  those voxel rows on the device the points are on (here the CPU: no GPU on this machine), a Python set of
  tuples built from the unique rows only, and the greedy cover over Python sets. **This is the ratio to quote.**
* ``numpy-keys``: a best-effort numpy version a careful engineer would write: one int64 key per voxel, one
  ``np.unique`` over (frame, voxel) pairs, and a greedy cover over a boolean "covered" array.
* ``plain`` (``--baselines plain``): a Python set of a tuple per masked point, no dedupe first: a naive lower
  bound, not the original; off by default.

Each timed call runs with Python's cyclic garbage collector paused (collected just before): the set-building
baselines make millions of small containers and with the collector on their time depends on where full
collections fall. Pausing only speeds the baselines up, so ratios are conservative; ``--gc on`` times with it
running.

Scenes are synthetic point maps shaped like VGGT's output, 392 x 518 (a 4:3 video such as VSI-Bench's usual
640x480) and 294 x 518 (16:9) per frame: a box room with a few objects, a walking camera, depth-dependent
noise, ``1 + exp(.)`` confidences and a few far, low-confidence outliers.

    python -m bench.bench_select_frames [--frames 16 32 64 128] [--sizes 392x518 294x518] [--reps 5]
        [--baselines original numpy-keys] [--gc paused] [--json result.json]
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.protocol import Protocol, notes, spread
from bench.results import emit
from bench.timing import time_interleaved
from sampling.space_aware import select_frames

# --------------------------------------------------------------------------------------------------------
# baseline


def reference_sets(
    world_points: np.ndarray, world_points_conf: np.ndarray, unique_rows: bool = False
) -> list[set[tuple[int, ...]]]:
    """Per-frame voxel sets, the plain way: float32 threshold, mask, bounding box, floor, set of tuples.

    ``unique_rows`` deduplicates each frame's voxel ids with ``np.unique(axis=0)`` before building the set,
    the structure of ``sa_sampling.py`` (which uses ``torch.unique(dim=0)``); same result, ~3x slower.
    """
    pts = np.asarray(world_points, dtype=np.float32)
    conf = np.asarray(world_points_conf, dtype=np.float32)
    threshold = np.percentile(conf.reshape(-1), 50)
    mask = (conf >= threshold) & (conf > np.float32(0.1))
    valid = pts[mask]
    lo = valid.min(axis=0)
    hi = valid.max(axis=0)
    voxel_size = (hi - lo).min() / np.float32(20)
    sets = []
    for t in range(pts.shape[0]):
        ids = np.floor((pts[t][mask[t]] - lo) / voxel_size).astype(np.int64)
        if unique_rows:
            ids = np.unique(ids, axis=0)
        sets.append(set(map(tuple, ids.tolist())))
    return sets


def reference_greedy(voxel_sets: Sequence[set[tuple[int, ...]]], k: int) -> list[int]:
    """Greedy maximum coverage over Python sets: strict '>' scanning ascending frames, stop at zero gain."""
    covered: set[tuple[int, ...]] = set()
    remaining = list(range(len(voxel_sets)))
    order: list[int] = []
    for _ in range(k):
        best, best_gain = -1, 0
        for frame in remaining:
            gain = len(voxel_sets[frame] - covered)
            if gain > best_gain:
                best, best_gain = frame, gain
        if best_gain == 0:
            break
        order.append(best)
        covered |= voxel_sets[best]
        remaining.remove(best)
    return order


def reference_select(
    world_points: np.ndarray, world_points_conf: np.ndarray, k: int, unique_rows: bool = False
) -> list[int]:
    """The whole selection with Python sets; returns sorted frame indices (also the tests' oracle)."""
    return sorted(reference_greedy(reference_sets(world_points, world_points_conf, unique_rows), k))


def original_select(world_points: np.ndarray, world_points_conf: np.ndarray, k: int, device: str = "cpu") -> list[int]:
    """The original's structure: per-frame ``torch.unique(dim=0)`` on ``device``, tuples from the unique rows."""
    pts = torch.as_tensor(world_points, dtype=torch.float32, device=device)
    conf = torch.as_tensor(world_points_conf, dtype=torch.float32, device=device)
    threshold = torch.tensor(np.percentile(conf.cpu().numpy().reshape(-1), 50), device=device)
    mask = (conf >= threshold) & (conf > 0.1)
    valid = pts[mask]
    lo = valid.min(dim=0).values
    voxel_size = (valid.max(dim=0).values - lo).min() / 20
    sets = []
    for t in range(pts.shape[0]):
        ids = torch.floor((pts[t][mask[t]] - lo) / voxel_size).long()
        rows = torch.unique(ids, dim=0)
        sets.append(set(map(tuple, rows.cpu().tolist())))
    return sorted(reference_greedy(sets, k))


def numpy_keys_select(world_points: np.ndarray, world_points_conf: np.ndarray, k: int) -> list[int]:
    """Best-effort numpy: one int64 key per voxel, one ``np.unique`` of (frame, cell) pairs, boolean cover."""
    pts = np.asarray(world_points, dtype=np.float32)
    conf = np.asarray(world_points_conf, dtype=np.float32)
    n_frames = pts.shape[0]
    threshold = np.percentile(conf.reshape(-1), 50)
    mask = (conf >= threshold) & (conf > np.float32(0.1))
    valid = pts[mask]
    lo = valid.min(axis=0)
    voxel_size = (valid.max(axis=0) - lo).min() / np.float32(20)
    ids = np.floor((valid - lo) / voxel_size).astype(np.int64)
    dims = ids.max(axis=0) + 1
    keys = (ids[:, 0] * dims[1] + ids[:, 1]) * dims[2] + ids[:, 2]
    cells, inverse = np.unique(keys, return_inverse=True)
    frame_of = np.repeat(np.arange(n_frames), mask.reshape(n_frames, -1).sum(axis=1))
    pairs = np.unique(frame_of * len(cells) + inverse.reshape(-1))
    bounds = np.searchsorted(pairs // len(cells), np.arange(n_frames + 1))
    per_frame = [pairs[bounds[t] : bounds[t + 1]] % len(cells) for t in range(n_frames)]
    covered = np.zeros(len(cells), dtype=bool)
    chosen: list[int] = []
    for _ in range(k):
        gains = np.array([np.count_nonzero(~covered[frame]) for frame in per_frame])
        best = int(np.argmax(gains))  # first maximum: ties go to the lowest frame, as in the original
        if gains[best] == 0:
            break
        chosen.append(best)
        covered[per_frame[best]] = True
    return sorted(chosen)


# --------------------------------------------------------------------------------------------------------
# synthetic scenes


def _box_hits(origin: np.ndarray, dirs: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Ray parameter of the first hit with an axis-aligned box seen from outside (inf when missed)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        t1 = (lo - origin) / dirs
        t2 = (hi - origin) / dirs
    near = np.nanmax(np.minimum(t1, t2), axis=1)
    far = np.nanmin(np.maximum(t1, t2), axis=1)
    return np.where((near <= far) & (near > 0), near, np.inf)


def make_scene(n_frames: int, height: int = 294, width: int = 518, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """World points [T, H, W, 3] and confidences [T, H, W] (float32) of a camera walking through a room."""
    rng = np.random.default_rng(seed)
    room = rng.uniform([4.0, 3.0, 2.4], [9.0, 7.0, 3.2])
    boxes = []
    for _ in range(rng.integers(2, 5)):
        size = rng.uniform([0.4, 0.4, 0.4], [1.8, 1.2, 1.5])
        corner = rng.uniform([0.0, 0.0, 0.0], [room[0] - size[0], room[1] - size[1], 0.0])
        boxes.append((corner, corner + size))
    waypoints = rng.uniform([0.8, 0.8, 1.3], [room[0] - 0.8, room[1] - 0.8, 1.7], size=(4, 3))
    s = np.linspace(0, 3, n_frames)
    path = np.stack([np.interp(s, np.arange(4), waypoints[:, i]) for i in range(3)], axis=1)
    heading = np.unwrap(np.arctan2(*np.gradient(path[:, :2], axis=0)[:, ::-1].T))
    yaw = heading + 0.8 * np.sin(np.linspace(0, 4 * np.pi, n_frames))
    focal = width / 2 / np.tan(np.radians(rng.uniform(60, 90)) / 2)
    u, v = np.meshgrid(np.arange(width) - (width - 1) / 2, np.arange(height) - (height - 1) / 2)
    cam = np.stack([np.full(u.size, focal), -u.ravel(), -v.ravel()], axis=1)  # forward, left, up
    cam /= np.linalg.norm(cam, axis=1, keepdims=True)
    points = np.empty((n_frames, height * width, 3), np.float32)
    conf = np.empty((n_frames, height * width), np.float32)
    for t in range(n_frames):
        c, sn, pitch = np.cos(yaw[t]), np.sin(yaw[t]), -0.15
        rot_yaw = np.array([[c, -sn, 0], [sn, c, 0], [0, 0, 1]])
        rot_pitch = np.array([[np.cos(pitch), 0, -np.sin(pitch)], [0, 1, 0], [np.sin(pitch), 0, np.cos(pitch)]])
        dirs = cam @ (rot_yaw @ rot_pitch).T
        origin = path[t]
        with np.errstate(divide="ignore"):
            walls = np.where(dirs > 0, (room - origin) / dirs, np.where(dirs < 0, -origin / dirs, np.inf))
        depth = walls.min(axis=1)
        for lo, hi in boxes:
            depth = np.minimum(depth, _box_hits(origin, dirs, lo, hi))
        depth = depth * (1 + rng.normal(0, 0.004, depth.size)) + rng.normal(0, 0.005, depth.size)
        outlier = rng.random(depth.size) < 0.03
        depth[outlier] += rng.uniform(12, 40, int(outlier.sum()))
        points[t] = origin + dirs * depth[:, None]
        conf[t] = 1 + np.exp(rng.normal(rng.normal(0.5, 0.5), 0.7, depth.size) - 0.12 * depth)
        conf[t, outlier] = 1.08
    return points.reshape(n_frames, height, width, 3), conf.reshape(n_frames, height, width)


# --------------------------------------------------------------------------------------------------------
# timing


BASELINES = ("original", "numpy-keys", "plain")
DEFAULT_BASELINES = ("original", "numpy-keys")
LABELS = {
    "original": "original's algorithm (per-frame torch.unique on CPU, tuples from unique rows)",
    "numpy-keys": "best-effort numpy (int64 voxel keys, boolean cover)",
    "plain": "naive lower bound (a tuple per masked point)",
}
TARGET_RATIO = 50.0


def _contender(name: str, points: np.ndarray, conf: np.ndarray, k: int) -> Callable[[], list[int]]:
    if name == "original":
        return lambda: original_select(points, conf, k)
    if name == "numpy-keys":
        return lambda: numpy_keys_select(points, conf, k)
    return lambda: reference_select(points, conf, k)


def measure(
    frames: Sequence[int] = (16, 32, 64, 128),
    k: int = 16,
    reps: int = 5,
    sizes: Sequence[tuple[int, int]] = ((392, 518), (294, 518)),
    baselines: Sequence[str] = DEFAULT_BASELINES,
    gc_mode: str = "paused",
    protocol: Protocol | None = None,
) -> dict[str, Any]:
    """Time every (size, T) against each baseline, interleaved; asserts identical selections on every scene.

    ``protocol``: the calibrated protocol of every section by default (tests pass one with a scripted machine)."""
    rows = []
    protocol = protocol or Protocol()
    for height, width in sizes:
        for n_frames in frames:
            points, conf = make_scene(n_frames, height, width, seed=n_frames)
            fast = select_frames(points, conf, k)
            fns: dict[str, Callable[[], object]] = {"vectorised": lambda p=points, c=conf: select_frames(p, c, k)}
            for baseline in baselines:
                fns[baseline] = _contender(baseline, points, conf, k)
                slow = fns[baseline]()
                assert fast == slow, f"T={n_frames}: vectorised {fast} != {baseline} {slow}"
            samples = time_interleaved(fns, reps, pause_gc=gc_mode == "paused", protocol=protocol)
            ms = {name: statistics.median(times) * 1e3 for name, times in samples.items()}
            samples_ms = {name: [t * 1e3 for t in times] for name, times in samples.items()}
            rows.append({"height": height, "width": width, "frames": n_frames, "selected": fast, "ms": ms,
                         "samples_ms": samples_ms})  # fmt: skip
            print(f"{height}x{width} T={n_frames}", *(f"{name} {t:.1f} ms" for name, t in ms.items()), flush=True)
    meta = {
        "k": k,
        "reps": reps,
        "sizes": [f"{h}x{w}" for h, w in sizes],
        "baselines": list(baselines),
        "gc": gc_mode,
        "torch_threads": torch.get_num_threads(),
        "protocol": protocol.meta(),
    }
    return {"meta": meta, "rows": rows}


def to_markdown(result: dict[str, Any]) -> str:
    meta = result["meta"]
    baselines = meta["baselines"]
    lines = [
        f"k={meta['k']}; cyclic GC {meta['gc']} while timing; median (min–max) of {meta['reps']} interleaved runs "
        f"(order shuffled per run, seeded) after one warm-up; torch threads {meta['torch_threads']}; selections "
        "identical on every scene. "
        "Ratio = baseline median / ours (vectorised numpy, `sampling.voxel_cover`).",
        "",
        *(f"- `{b}`: {LABELS[b]}" for b in baselines),
        "",
        "| points per frame | T | " + " | ".join(f"{b} ms" for b in baselines) + " | ours ms | "
        + " | ".join(f"{b} / ours" for b in baselines) + " |",
        "| --- | ---: " + "| ---: " * (2 * len(baselines) + 1) + "|",
    ]  # fmt: skip
    for row in result["rows"]:
        ms = row["ms"]
        slow = " | ".join(spread(row["samples_ms"][b], ".1f") for b in baselines)
        ratios = " | ".join(f"{ms[b] / ms['vectorised']:.1f}x" for b in baselines)
        size = f"{row.get('height', meta.get('height'))}x{row.get('width', meta.get('width'))}"
        lines.append(
            f"| {size} | {row['frames']} | {slow} | {spread(row['samples_ms']['vectorised'], '.1f')} | {ratios} |"
        )
    last_t = max(row["frames"] for row in result["rows"])
    verdicts = [
        f"{row['ms'][b] / row['ms']['vectorised']:.0f}x vs {b} at {row.get('height')}x{row.get('width')}"
        for row in result["rows"]
        if row["frames"] == last_t
        for b in baselines
    ]
    lines += [
        "",
        f"At T = {last_t} (target {TARGET_RATIO:g}x vs the original's algorithm), on this CPU: " + "; ".join(verdicts)
        + ". The original runs `torch.unique` on its GPU, where that step is far faster than here: these ratios are "
        "CPU ratios, not the gain on the original's GPU machine (estimated at 3–6x there, not measured).",
    ]  # fmt: skip
    return "\n".join(lines) + "\n" + ("\n" + notes(meta) + "\n" if notes(meta) else "")


def plot(result: dict[str, Any], path: Path) -> None:
    """Time against T for each contender at the first size, log-scaled."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    first = result["rows"][0].get("height"), result["rows"][0].get("width")
    rows = [row for row in result["rows"] if (row.get("height"), row.get("width")) == first]
    frames = [row["frames"] for row in rows]
    fig, ax = plt.subplots(figsize=(5.5, 3.5), dpi=120)
    for name in [*result["meta"]["baselines"], "vectorised"]:
        label = "ours (vectorised)" if name == "vectorised" else name
        ax.plot(frames, [row["ms"][name] for row in rows], "o-", label=label)
    ax.set(xlabel="candidate frames T", ylabel="ms per selection (log)", yscale="log",
           title=f"Space-aware selection, {first[0]}x{first[1]} points/frame, CPU")  # fmt: skip
    ax.set_xticks(frames)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _size(text: str) -> tuple[int, int]:
    height, width = text.lower().split("x")
    return int(height), int(width)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, nargs="+", default=[16, 32, 64, 128])
    parser.add_argument("--k", type=int, default=16)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--sizes", type=_size, nargs="+", default=[(392, 518), (294, 518)], help="HxW per frame")
    parser.add_argument("--baselines", nargs="+", choices=BASELINES, default=list(DEFAULT_BASELINES))
    parser.add_argument(
        "--gc",
        choices=["paused", "on"],
        default="paused",
        help="paused: cyclic GC off during each timed call (stable, conservative); on: left running",
    )
    parser.add_argument("--json", type=Path, help="also write the result here")
    args = parser.parse_args(argv)
    result = measure(args.frames, args.k, args.reps, args.sizes, args.baselines, args.gc)
    emit(result, to_markdown, args.json)


if __name__ == "__main__":
    main()

"""Benchmark: vectorised space-aware selection vs a plain Python-set implementation of the same algorithm.

The baseline, :func:`reference_select`, is the reference algorithm written the obvious way: plain numpy for
the per-point arithmetic, one Python ``set`` of voxel tuples per frame and a greedy loop over set
differences. (``sa_sampling.py`` itself runs a per-frame ``torch.unique(dim=0)`` before building its sets,
and gathers the masked points twice for the bounding box; both are slower, so the default ``plain``
baseline is the conservative one and ``--baseline unique-rows`` mirrors the reference's structure.) The
tests also use it as an independent oracle for :func:`sampling.space_aware.select_frames`.

Each timed call runs with Python's cyclic garbage collector paused (collected just before). The baseline
builds millions of small containers, and with the collector on its time depends on when full collections
happen to fall: the same code on the same scene took 4.5 s in one run and 20 s in the next at T=128, while
with the collector paused it is a steady ~3 s. Pausing only ever makes the baseline faster, so the ratio is
the conservative one; ``--gc on`` times both with the collector running. The two sides also react
differently to a busy machine (it slows the baseline more), so quote numbers from an otherwise idle one.

Scenes are synthetic point maps shaped like VGGT's output for a 16:9 video (294 x 518 per frame): a box room
with a few objects, a walking camera, depth-dependent noise, ``1 + exp(.)`` confidences and a few far,
low-confidence outliers.

    python -m bench.bench_select_frames [--frames 16 32 64 128] [--reps 7] [--baselines plain unique-rows]
        [--gc paused] [--height 294 --width 518] [--json result.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

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
    """The whole selection with Python sets; returns sorted frame indices."""
    return sorted(reference_greedy(reference_sets(world_points, world_points_conf, unique_rows), k))


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


BASELINES = ("plain", "unique-rows")
TARGET_RATIO = 50.0


def measure(
    frames: Sequence[int] = (16, 32, 64, 128),
    k: int = 16,
    reps: int = 7,
    height: int = 294,
    width: int = 518,
    baselines: Sequence[str] = BASELINES,
    gc_mode: str = "paused",
) -> dict[str, Any]:
    """Time every T against each baseline, interleaved; asserts identical selections on every scene."""
    rows = []
    for n_frames in frames:
        points, conf = make_scene(n_frames, height, width, seed=n_frames)
        fast = select_frames(points, conf, k)
        fns: dict[str, Callable[[], object]] = {"vectorised": lambda p=points, c=conf: select_frames(p, c, k)}
        for baseline in baselines:
            slow = reference_select(points, conf, k, baseline == "unique-rows")
            assert fast == slow, f"T={n_frames}: vectorised {fast} != {baseline} python-set {slow}"
            fns[baseline] = lambda p=points, c=conf, u=baseline == "unique-rows": reference_select(p, c, k, u)
        samples = time_interleaved(fns, reps, pause_gc=gc_mode == "paused")
        ms = {name: statistics.median(times) * 1e3 for name, times in samples.items()}
        rows.append({"frames": n_frames, "selected": fast, "ms": ms})
        print(f"T={n_frames}", *(f"{name} {t:.1f} ms" for name, t in ms.items()), flush=True)
    meta = {"k": k, "reps": reps, "height": height, "width": width, "baselines": list(baselines), "gc": gc_mode}
    return {"meta": meta, "rows": rows}


def to_markdown(result: dict[str, Any]) -> str:
    meta = result["meta"]
    baselines = meta["baselines"]
    lines = [
        f"k={meta['k']}, {meta['height']}x{meta['width']} world points per frame, cyclic GC {meta['gc']} while "
        f"timing, median of {meta['reps']} interleaved runs after one warm-up; selections identical on every scene.",
        "",
        "| T | " + " | ".join(f"python-set ({b}) ms" for b in baselines) + " | vectorised ms | "
        + " | ".join(f"ratio vs {b}" for b in baselines) + " |",
        "| ---: " * (2 * len(baselines) + 2) + "|",
    ]  # fmt: skip
    for row in result["rows"]:
        ms = row["ms"]
        slow = " | ".join(f"{ms[b]:.1f}" for b in baselines)
        ratios = " | ".join(f"{ms[b] / ms['vectorised']:.1f}x" for b in baselines)
        lines.append(f"| {row['frames']} | {slow} | {ms['vectorised']:.1f} | {ratios} |")
    last = result["rows"][-1]
    verdicts = [
        f"{last['ms'][b] / last['ms']['vectorised']:.0f}x vs {b} "
        f"({'met' if last['ms'][b] / last['ms']['vectorised'] >= TARGET_RATIO else 'not met'})"
        for b in baselines
    ]
    lines += ["", f"Target: {TARGET_RATIO:g}x at T = {last['frames']}: " + "; ".join(verdicts) + "."]
    return "\n".join(lines) + "\n"


def plot(result: dict[str, Any], path: Path) -> None:
    """Speed-up against T for each baseline, log-scaled times."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    frames = [row["frames"] for row in result["rows"]]
    fig, ax = plt.subplots(figsize=(5.5, 3.5), dpi=120)
    for name in [*result["meta"]["baselines"], "vectorised"]:
        label = "vectorised (ours)" if name == "vectorised" else f"python-set greedy ({name})"
        ax.plot(frames, [row["ms"][name] for row in result["rows"]], "o-", label=label)
    ax.set(xlabel="candidate frames T", ylabel="ms per selection (log)", yscale="log", title="Space-aware selection")
    ax.set_xticks(frames)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, nargs="+", default=[16, 32, 64, 128])
    parser.add_argument("--k", type=int, default=16)
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--height", type=int, default=294)
    parser.add_argument("--width", type=int, default=518)
    parser.add_argument(
        "--baselines",
        nargs="+",
        choices=BASELINES,
        default=list(BASELINES),
        help="plain: a set of voxel tuples per frame; unique-rows: np.unique(axis=0) first (sa_sampling.py)",
    )
    parser.add_argument(
        "--gc",
        choices=["paused", "on"],
        default="paused",
        help="paused: cyclic GC off during each timed call (stable, conservative); on: left running",
    )
    parser.add_argument("--json", type=Path, help="also write the result here")
    args = parser.parse_args(argv)
    result = measure(args.frames, args.k, args.reps, args.height, args.width, args.baselines, args.gc)
    print(to_markdown(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()

"""The measurement protocol every CPU benchmark follows, in one place.

A shared 2-core machine changes speed under a benchmark's feet (another job starts, a turbo budget runs out), and
a path that always runs after the same neighbour inherits its leftovers. So every section:

* runs a warm-up pass that is not counted (first-call costs are not the subject);
* shuffles the order of its paths per repetition with a fixed seed (``random.Random(seed)``, not a cyclic shift,
  so no path always follows the same one, and a re-run gets the same orders);
* times a fixed CPU-bound calibration task before and after each pass: a pass whose calibration moved by more
  than ``tolerance`` (between before and after, or from the section's first calibration) is run once more, and
  when the re-run moved too the section is marked noisy with the reason, which the page prints; so is a kept
  pass that ran while the machine was slower than the fastest calibration of the section (a section that began
  slow agrees with its own first calibration, so that check alone would miss it);
* reports medians with the min–max of the samples beside them (:func:`spread`).
"""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

T = TypeVar("T")
TOLERANCE = 0.15
SEED = 0


def shuffled_orders(names: Sequence[str], reps: int, seed: int = SEED) -> list[list[str]]:
    """One order of ``names`` per repetition, each a seeded shuffle (reproducible, not a rotation)."""
    rng = random.Random(seed)
    orders = []
    for _ in range(reps):
        order = list(names)
        rng.shuffle(order)
        orders.append(order)
    return orders


def calibration_seconds(size: int = 256, rounds: int = 100, trials: int = 5, budget_s: float = 1.0) -> float:
    """The machine's speed: the fastest of ``trials`` runs of a fixed float64 matmul loop in torch.

    torch on its usual thread pool, as the in-process model paths run: when another process takes a core, its
    threads wait on each other and this slows down the way those paths do (a single-threaded task would not
    notice; on a loaded 2-core machine this loop runs ten times slower or worse than idle, ~0.05 s). The fastest of
    five ignores a momentary hiccup and still sees a slowdown that lasts; past ``budget_s`` no further trial
    starts, so a loaded machine does not spend seconds per calibration.
    """
    import torch

    generator = torch.Generator().manual_seed(0)
    b = torch.randn(size, size, generator=generator, dtype=torch.float64) / size**0.5
    best, began = float("inf"), time.perf_counter()
    for _ in range(trials):
        a = torch.randn(size, size, generator=generator, dtype=torch.float64)
        start = time.perf_counter()
        for _ in range(rounds):
            a = torch.tanh(a @ b)  # tanh keeps the values bounded, so every round does the same work
        best = min(best, time.perf_counter() - start)
        if time.perf_counter() - began > budget_s:
            break
    return best


class Protocol:
    """Runs passes between two calibrations, re-runs a pass once when the machine's speed moved, records why.

    ``calibrate`` is injectable so tests can drive the re-run and noisy logic with a scripted machine.
    """

    def __init__(
        self,
        tolerance: float = TOLERANCE,
        seed: int = SEED,
        calibrate: Callable[[], float] = calibration_seconds,
    ) -> None:
        self.tolerance = tolerance
        self.seed = seed
        self.calibrate = calibrate
        self.baseline_s: float | None = None
        self.calibrations: list[dict[str, Any]] = []
        self.reruns: list[str] = []
        self.noisy_reasons: list[str] = []

    def moved(self, before: float, after: float) -> float:
        """The largest relative change: within the pass, or of either end from the section's first calibration."""
        if self.baseline_s is None:
            self.baseline_s = before
        base = self.baseline_s
        return max(abs(after - before) / min(before, after), abs(before - base) / base, abs(after - base) / base)

    def run_pass(self, label: str, fn: Callable[[], T]) -> T:
        """``fn()`` between two calibrations; once more when they moved by more than the tolerance."""
        for attempt in range(2):
            before = self.calibrate()
            value = fn()
            after = self.calibrate()
            moved = self.moved(before, after)
            self.calibrations.append(
                {"pass": label, "attempt": attempt, "before_s": before, "after_s": after, "moved": round(moved, 4)}
            )
            if moved <= self.tolerance:
                return value
            if attempt == 0:
                self.reruns.append(label)
        self.flag(
            f"{label}: the calibration task's time moved {moved:.0%} (limit {self.tolerance:.0%}) around the pass "
            f"and again around its re-run ({before:.3f} s before, {after:.3f} s after, {self.baseline_s:.3f} s at "
            "the section's start): the machine's speed changed while it ran"
        )
        return value

    def flag(self, reason: str) -> None:
        """Mark the section noisy (the page prints every reason)."""
        self.noisy_reasons.append(reason)

    def slow_passes(self) -> list[str]:
        """Kept passes that ran while the machine was slower than its fastest calibration by more than the tolerance.

        Catches a section that began slow (its first calibration too): each pass then agrees with the first, yet
        the machine later showed it could run faster.
        """
        times = [c[k] for c in self.calibrations for k in ("before_s", "after_s")]
        if not times:
            return []
        fastest = min(times)
        kept = {c["pass"]: c for c in self.calibrations}  # the last attempt of each pass is the one kept
        flagged = {reason.split(":", 1)[0] for reason in self.noisy_reasons}
        return [
            f"{label}: ran while the calibration task took {max(c['before_s'], c['after_s']) / fastest - 1:.0%} longer "
            f"than its fastest in this section (limit {self.tolerance:.0%})"
            for label, c in kept.items()
            if label not in flagged and max(c["before_s"], c["after_s"]) > fastest * (1 + self.tolerance)
        ]

    def meta(self) -> dict[str, Any]:
        """What the JSON keeps and the page prints: seed, tolerance, calibrations, re-runs, noisy reasons."""
        times = [c[k] for c in self.calibrations for k in ("before_s", "after_s")]
        reasons = self.noisy_reasons + self.slow_passes()
        return {
            "order": f"shuffled per repetition (random.Random({self.seed}))",
            "seed": self.seed,
            "tolerance": self.tolerance,
            "calibration_s": spread_values(times),
            "calibrations": self.calibrations,
            "reruns": self.reruns,
            "noisy": bool(reasons),
            "noisy_reasons": reasons,
        }


def spread_values(values: Sequence[float]) -> dict[str, float]:
    """Median, min and max of samples (NaN for none)."""
    if not values:
        return {"median": float("nan"), "min": float("nan"), "max": float("nan")}
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def spread(values: Sequence[float], fmt: str = ".2f", unit: str = "", scale: float = 1.0) -> str:
    """``median (min–max)`` of samples, e.g. ``12.3 ms (11.9–14.0)``; just the value for one sample."""
    s = {k: v * scale for k, v in spread_values(values).items()}
    if len(values) == 1:
        return f"{s['median']:{fmt}}{unit}"
    return f"{s['median']:{fmt}}{unit} ({s['min']:{fmt}}–{s['max']:{fmt}})"


def notes(meta: dict[str, Any]) -> str:
    """The protocol's lines under a table: what was re-run, and every reason the section is marked noisy."""
    protocol = meta.get("protocol")
    if not protocol:
        return ""
    lines = []
    if protocol["reruns"]:
        lines.append(
            f"Re-run once because the calibration task moved more than {protocol['tolerance']:.0%}: "
            + ", ".join(protocol["reruns"])
            + "."
        )
    for reason in protocol["noisy_reasons"]:
        lines.append(f"**Noisy:** {reason}.")
    return "\n\n".join(lines)

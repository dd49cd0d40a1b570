"""Side-by-side timing for the CPU benchmarks: every contender once per round, under :mod:`bench.protocol`."""

from __future__ import annotations

import gc
import time
from collections.abc import Callable

from bench.protocol import Protocol, shuffled_orders


def time_interleaved(
    fns: dict[str, Callable[[], object]], reps: int, pause_gc: bool = False, protocol: Protocol | None = None
) -> dict[str, list[float]]:
    """Seconds per call: one warm-up each, then ``reps`` rounds of every fn in a seeded shuffled order per round.

    Each round is one pass of ``protocol`` (calibrated before and after, re-run once when the machine's speed
    moved; only the kept attempt's samples count). With ``pause_gc`` each call runs with the cyclic collector off
    (after a collection), so a contender that builds millions of small containers is not timed by where full
    collections happen to fall.
    """
    protocol = protocol or Protocol()
    for fn in fns.values():  # warm-up: first-call costs (lazy imports, allocator growth) are not the subject
        fn()

    def one_round(order: list[str]) -> dict[str, float]:
        times = {}
        for name in order:
            was_enabled = gc.isenabled()
            if pause_gc:
                gc.collect()
                gc.disable()
            try:
                start = time.perf_counter()
                fns[name]()
                times[name] = time.perf_counter() - start
            finally:
                if was_enabled:
                    gc.enable()
        return times

    samples: dict[str, list[float]] = {name: [] for name in fns}
    for rep, order in enumerate(shuffled_orders(list(fns), reps, protocol.seed)):
        for name, seconds in protocol.run_pass(f"round {rep}", lambda order=order: one_round(order)).items():
            samples[name].append(seconds)
    return samples

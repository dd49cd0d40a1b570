"""Side-by-side timing for the CPU benchmarks: every contender once per round, the order rotating per round."""

from __future__ import annotations

import gc
import time
from collections.abc import Callable


def time_interleaved(fns: dict[str, Callable[[], object]], reps: int, pause_gc: bool = False) -> dict[str, list[float]]:
    """Seconds per call: one warm-up each, then ``reps`` rounds of every fn, the order rotating per round.

    With ``pause_gc`` each call runs with the cyclic collector off (after a collection), so a contender that
    builds millions of small containers is not timed by where full collections happen to fall.
    """
    for fn in fns.values():  # warm-up: first-call costs (lazy imports, allocator growth) are not the subject
        fn()
    names = list(fns)
    samples: dict[str, list[float]] = {name: [] for name in names}
    for rep in range(reps):
        shift = rep % len(names)
        for name in names[shift:] + names[:shift]:
            was_enabled = gc.isenabled()
            if pause_gc:
                gc.collect()
                gc.disable()
            try:
                start = time.perf_counter()
                fns[name]()
                samples[name].append(time.perf_counter() - start)
            finally:
                if was_enabled:
                    gc.enable()
    return samples

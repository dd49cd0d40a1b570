"""The measurement protocol's pieces (bench/protocol.py, bench/timing.py): order, calibration, re-runs, spread."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bench.protocol import Protocol, calibration_seconds, notes, shuffled_orders, spread, spread_values
from bench.timing import time_interleaved

NAMES = ["seed", "seed_cached", "vllm_c8", "ours_c1", "ours_c8"]


def rotations(names: list[str]) -> list[list[str]]:
    return [names[i:] + names[:i] for i in range(len(names))]


def test_orders_are_seeded_shuffles_not_a_cyclic_shift() -> None:
    orders = shuffled_orders(NAMES, 20, seed=0)
    assert orders == shuffled_orders(NAMES, 20, seed=0)  # reproducible
    assert orders != shuffled_orders(NAMES, 20, seed=1)
    assert all(sorted(order) == sorted(NAMES) for order in orders)  # every path once per repetition
    assert any(order not in rotations(NAMES) for order in orders)
    followers = {(order[i], order[i + 1]) for order in orders for i in range(len(order) - 1)}
    assert len(followers) > len(NAMES)  # a rotation only ever gives the same neighbours


def scripted(times: list[float]) -> Iterator[float]:
    yield from times


def protocol_with(times: list[float], tolerance: float = 0.15) -> Protocol:
    clock = scripted(times)
    return Protocol(tolerance=tolerance, calibrate=lambda: next(clock))


def counting() -> tuple[list[int], object]:
    calls: list[int] = []

    def fn() -> int:
        calls.append(1)
        return len(calls)

    return calls, fn


def test_a_steady_machine_runs_each_pass_once() -> None:
    protocol = protocol_with([1.0, 1.05, 1.02, 0.98])
    calls, fn = counting()
    assert protocol.run_pass("a", fn) == 1 and protocol.run_pass("b", fn) == 2
    meta = protocol.meta()
    assert len(calls) == 2 and meta["reruns"] == [] and meta["noisy"] is False and notes({"protocol": meta}) == ""


def test_a_pass_whose_calibration_moved_is_re_run_once_and_kept_when_the_re_run_is_steady() -> None:
    protocol = protocol_with([1.0, 1.0, 1.0, 1.5, 1.0, 1.02])  # pass b: slow after, re-run steady
    _, fn = counting()
    protocol.run_pass("a", fn)
    assert protocol.run_pass("b", fn) == 3  # the re-run's value is the one kept
    meta = protocol.meta()
    assert meta["reruns"] == ["b"] and not meta["noisy"]
    assert [c["attempt"] for c in meta["calibrations"]] == [0, 0, 1]
    assert "Re-run once" in notes({"protocol": meta}) and "b" in notes({"protocol": meta})


def test_a_pass_that_moves_again_on_its_re_run_marks_the_section_noisy_with_the_reason() -> None:
    protocol = protocol_with([1.0, 1.0, 1.0, 2.0, 2.0, 3.0])
    calls, fn = counting()
    protocol.run_pass("a", fn)
    protocol.run_pass("b", fn)
    assert len(calls) == 3  # re-run once, not forever
    meta = protocol.meta()
    assert meta["noisy"] and len(meta["noisy_reasons"]) == 1 and meta["noisy_reasons"][0].startswith("b:")
    assert "**Noisy:**" in notes({"protocol": meta})


def test_a_whole_pass_at_another_speed_is_caught_against_the_first_calibration() -> None:
    # both ends of pass b agree with each other, but the machine runs 3x slower than when the section began
    protocol = protocol_with([1.0, 1.0, 3.0, 3.0, 3.0, 3.0])
    _, fn = counting()
    protocol.run_pass("a", fn)
    protocol.run_pass("b", fn)
    assert protocol.meta()["reruns"] == ["b"] and protocol.meta()["noisy"]


def test_a_section_that_began_slow_is_caught_against_its_fastest_calibration() -> None:
    # every pass within 15% of the first calibration, but the machine later ran 15% faster than pass a did
    protocol = protocol_with([1.0, 1.0, 0.9, 0.9, 0.86, 0.86])
    _, fn = counting()
    for label in "abc":
        protocol.run_pass(label, fn)
    meta = protocol.meta()
    assert meta["reruns"] == [] and meta["noisy"]
    assert [reason.split(":")[0] for reason in meta["noisy_reasons"]] == ["a"]


def test_spread_shows_median_and_min_max() -> None:
    assert spread([3.0, 1.0, 2.0]) == "2.00 (1.00–3.00)"
    assert spread([0.0123, 0.0119, 0.014], ".1f", " ms", scale=1e3) == "12.3 ms (11.9–14.0)"
    assert spread([5.0]) == "5.00"
    assert spread_values([1.0, 4.0]) == {"median": 2.5, "min": 1.0, "max": 4.0}


def test_calibration_task_takes_a_measurable_time() -> None:
    assert 0 < calibration_seconds(size=32, rounds=5, trials=2) < 5


def test_interleaved_timing_keeps_only_the_kept_attempt_of_a_re_run_round() -> None:
    protocol = protocol_with([1.0, 1.0, 1.0, 2.0, 1.0, 1.0, 1.0, 1.0], tolerance=0.15)
    seen: list[str] = []
    fns = {name: (lambda name=name: seen.append(name)) for name in ("a", "b", "c")}
    samples = time_interleaved(fns, reps=3, protocol=protocol)
    assert {name: len(times) for name, times in samples.items()} == {"a": 3, "b": 3, "c": 3}
    assert len(seen) == 3 + 4 * 3  # warm-up, three rounds and one re-run
    assert protocol.meta()["reruns"] == ["round 1"]


@pytest.mark.parametrize("tolerance", [0.0, 0.5])
def test_the_tolerance_decides(tolerance: float) -> None:
    protocol = protocol_with([1.0, 1.2, 1.0, 1.2], tolerance=tolerance)
    _, fn = counting()
    protocol.run_pass("a", fn)
    assert protocol.meta()["noisy"] is (tolerance == 0.0)

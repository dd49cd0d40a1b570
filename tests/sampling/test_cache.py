"""The sampling cache: content-keyed, bounded, counted."""

from __future__ import annotations

import threading

from sampling.cache import SamplingCache, content_hash


def test_content_hash_depends_on_bytes_only() -> None:
    assert content_hash(b"abc") == content_hash(b"abc")
    assert content_hash(b"abc") != content_hash(b"abd")
    assert len(content_hash(b"")) == 64


def test_hits_misses_and_bound() -> None:
    cache: SamplingCache[list[int]] = SamplingCache(max_entries=2)
    calls: list[str] = []

    def compute(name: str) -> list[int]:
        calls.append(name)
        return [len(name)]

    assert cache.get_or_compute(("a", 16), lambda: compute("a")) == [1]
    assert cache.get_or_compute(("a", 16), lambda: compute("a")) == [1]
    assert (cache.hits, cache.misses, calls) == (1, 1, ["a"])
    cache.get_or_compute(("bb", 16), lambda: compute("bb"))
    cache.get_or_compute(("ccc", 16), lambda: compute("ccc"))  # evicts the least recently used ("a")
    assert len(cache) == 2
    cache.get_or_compute(("a", 16), lambda: compute("a"))
    assert calls == ["a", "bb", "ccc", "a"]


def test_parameters_are_part_of_the_key() -> None:
    cache: SamplingCache[int] = SamplingCache()
    key = content_hash(b"video")
    assert cache.get_or_compute((key, "uniform", 16), lambda: 1) == 1
    assert cache.get_or_compute((key, "space_aware", 16), lambda: 2) == 2


def test_concurrent_use_is_safe() -> None:
    cache: SamplingCache[int] = SamplingCache(max_entries=8)

    def worker(offset: int) -> None:
        for i in range(200):
            cache.get_or_compute((i + offset) % 16, lambda i=i: i)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(cache) == 8 and cache.hits + cache.misses == 800

"""Bounded caches for sampling results, keyed by what the bytes are, never by what a client calls them.

A key is the SHA-256 of the video's content plus every parameter that changes the result, so two uploads of
the same bytes share an entry and no file name, URL or id a client chooses can collide with another video.
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

from cachetools import LRUCache

Value = TypeVar("Value")


def content_hash(data: bytes) -> str:
    """Hex SHA-256 of the video bytes: the identity of a video for every cache here."""
    return hashlib.sha256(data).hexdigest()


class SamplingCache(Generic[Value]):
    """Thread-safe LRU, bounded by entry count or, with ``sizeof``, by the total size it reports (e.g. the
    bytes of cached frames, so a few huge entries cannot exhaust memory), with hit/miss counters."""

    def __init__(self, max_entries: int = 1024, sizeof: Callable[[Value], int] | None = None) -> None:
        self._entries: LRUCache[Hashable, Value] = LRUCache(maxsize=max_entries, getsizeof=sizeof)
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get_or_compute(self, key: Hashable, compute: Callable[[], Value]) -> Value:
        """The cached value for ``key``, computing (outside the lock) and storing it on a miss."""
        with self._lock:
            if key in self._entries:
                self.hits += 1
                return self._entries[key]
            self.misses += 1
        value = compute()
        with self._lock:
            self._entries[key] = value
        return value

    def lookup(self, key: Hashable) -> Value | None:
        """The cached value (refreshing its recency) or None; counts a hit or a miss."""
        with self._lock:
            value = self._entries.get(key)
            if value is None:
                self.misses += 1
            else:
                self.hits += 1
            return value

    def store(self, key: Hashable, value: Value) -> None:
        """Insert or replace ``key``, evicting the least recently used entries past the bound."""
        with self._lock, contextlib.suppress(ValueError):  # larger than the whole cache: served, not kept
            self._entries[key] = value

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

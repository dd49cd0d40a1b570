"""Which question a free worker asks next: a video's first question alone, then the rest of that video together.

The server samples a video's frames (space-aware sampling runs VGGT) on the first request that needs them and
caches the result; requests that arrive while that first sampling is still running each sample again. The first
question of each video therefore runs alone. Meanwhile the other workers start on the next videos, so no
worker waits unless all the remaining videos are still on their first question. Once the first answer is back,
the video's other questions go out together and hit the sampling, encoder and prefix caches. Videos that are
already primed come first, which keeps the set of videos in flight (and so cache pressure) small.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any


class VideoScheduler:
    """Hands out questions grouped by video (``video_key(question)``) in first-appearance order."""

    def __init__(self, questions: Sequence[dict[str, Any]], video_key: Callable[[dict[str, Any]], str]) -> None:
        self._video_key = video_key
        self._queues: dict[str, deque[dict[str, Any]]] = {}
        for question in questions:
            self._queues.setdefault(video_key(question), deque()).append(question)
        self._priming: dict[str, int] = {}  # video -> id() of its first question, while in flight
        self._ready: set[str] = set()
        self._changed = asyncio.Condition()

    def _pick(self) -> dict[str, Any] | None:
        for key, queue in self._queues.items():
            if key in self._ready and queue:
                return queue.popleft()
        for key, queue in self._queues.items():
            if key not in self._ready and key not in self._priming and queue:
                question = queue.popleft()
                self._priming[key] = id(question)
                return question
        return None

    async def next(self) -> dict[str, Any] | None:
        """The next question to ask, waiting while only first questions are in flight; None when all are out."""
        async with self._changed:
            while True:
                question = self._pick()
                if question is not None or not self._priming:
                    return question
                await self._changed.wait()

    async def done(self, question: dict[str, Any]) -> None:
        """Report a question finished (answered or failed); the first one releases the rest of its video."""
        key = self._video_key(question)
        if self._priming.get(key) != id(question):
            return
        async with self._changed:
            del self._priming[key]
            self._ready.add(key)
            self._changed.notify_all()

"""Each video uploaded once (``POST /v1/files``) and its file id shared by all its questions.

Asking by file id, rather than sending the video with every question, moves each video over the wire once and
lets the server's sampling cache and vLLM's encoder and prefix caches hit on every later question about it. The
ids are kept in the output folder: a resumed run checks that the server still has each file (uploads expire) and
uploads again only when it does not.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import openai


class VideoFiles:
    """File ids by video key; concurrent askers of one video wait for a single upload."""

    def __init__(
        self,
        client: openai.AsyncOpenAI,
        known: Mapping[str, Mapping[str, Any]],
        save: Callable[[dict[str, dict[str, Any]]], None],
        max_parallel_uploads: int = 2,
    ) -> None:
        self.client = client
        self.files: dict[str, dict[str, Any]] = {k: dict(v) for k, v in known.items()}
        self.save = save
        self.uploaded = 0
        self._checked: set[str] = set()  # stored ids confirmed on the server during this run
        self._locks: dict[str, asyncio.Lock] = {}
        self._slots = asyncio.Semaphore(max_parallel_uploads)

    async def file_id(self, key: str, path: Path) -> str:
        """The server's file id for this video, uploading it if the server does not have it."""
        async with self._locks.setdefault(key, asyncio.Lock()):
            entry = self.files.get(key)
            if entry is not None and key in self._checked:
                return entry["id"]
            if entry is not None:
                try:
                    await self.client.files.retrieve(entry["id"])
                    self._checked.add(key)
                    return entry["id"]
                except openai.NotFoundError:
                    pass  # expired or another server: upload again
            return await self._upload(key, path)

    async def replace(self, key: str, path: Path, stale_id: str) -> str:
        """A fresh upload when ``stale_id`` turned out to be gone (unless another asker already replaced it)."""
        async with self._locks.setdefault(key, asyncio.Lock()):
            entry = self.files.get(key)
            if entry is not None and entry["id"] != stale_id:
                return entry["id"]
            return await self._upload(key, path)

    async def _upload(self, key: str, path: Path) -> str:
        async with self._slots:
            data = await asyncio.to_thread(path.read_bytes)
            stored = await self.client.files.create(file=(path.name, data, "video/mp4"), purpose="user_data")
        self.files[key] = {"id": stored.id, "bytes": stored.bytes, "filename": path.name}
        self._checked.add(key)
        self.uploaded += 1
        self.save(self.files)
        return stored.id

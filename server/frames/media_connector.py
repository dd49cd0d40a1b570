"""Hands videos our routes already decoded and sampled to vLLM's chat renderer, without a second decode.

vLLM loads the media of a chat message through a pluggable "media connector". Ours, bound to one app's
:class:`PreparedVideoStore` by :func:`install_media_connector`, resolves a ``video_url`` of the form
``spatial-mllm-prepared://<token>`` to the frames and metadata our route stored under that one-time token,
wrapped with the sampling key as the bytes vLLM hashes for its caches, so the same video sampled the same way
hits vLLM's processor and encoder caches. Any other video URL is refused here: every client video must have
gone through our limits and sampling.
Images keep vLLM's own loading (our route checks their URLs first).
"""

from __future__ import annotations

import secrets
import threading
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from server.runtime.vllm_seams import MediaConnector, MediaWithBytes, VLLMValidationError, register_media_connector

PREPARED_SCHEME = "spatial-mllm-prepared://"


@dataclass(frozen=True)
class PreparedVideo:
    """Sampled frames as vLLM's Qwen2.5-VL processor takes them: uint8 [T, H, W, 3] plus video metadata."""

    frames: np.ndarray
    metadata: dict[str, Any]
    key: str  # content hash + sampling parameters: the identity of these frames
    used: dict[str, Any] = field(default_factory=dict)  # the answer's ``video_frames`` entry (server.frames.video_prep)


class PreparedVideoStore:
    """One-time tokens for prepared videos, held only while the request that made them is being rendered."""

    def __init__(self) -> None:
        self._items: dict[str, PreparedVideo] = {}
        self._lock = threading.Lock()

    def put(self, video: PreparedVideo) -> str:
        token = secrets.token_urlsafe(16)
        with self._lock:
            self._items[token] = video
        return PREPARED_SCHEME + token

    def get(self, url: str) -> PreparedVideo | None:
        with self._lock:
            return self._items.get(url.removeprefix(PREPARED_SCHEME))

    def release(self, urls: list[str]) -> None:
        with self._lock:
            for url in urls:
                self._items.pop(url.removeprefix(PREPARED_SCHEME), None)

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)


class PreparedVideoConnector(MediaConnector):
    """vLLM's connector, except that videos come from :attr:`store` only (set by :func:`install_media_connector`)."""

    store: PreparedVideoStore

    def _prepared(self, video_url: str) -> MediaWithBytes:
        video = self.store.get(video_url) if video_url.startswith(PREPARED_SCHEME) else None
        if video is None:
            raise VLLMValidationError("video_url parts must be data:, http(s) or file-id URLs", parameter="video_url")
        return MediaWithBytes((video.frames, video.metadata), video.key.encode())

    def fetch_video(self, video_url: str, **_: Any) -> MediaWithBytes:
        return self._prepared(video_url)

    async def fetch_video_async(self, video_url: str, **_: Any) -> MediaWithBytes:
        return self._prepared(video_url)

    @staticmethod
    def _inline_only(image_url: str) -> None:
        # Our route turns http(s) images into data: URLs after its own address checks; vLLM's fetcher has none.
        if image_url[:5].lower() != "data:":
            raise VLLMValidationError("image_url parts must be data: or http(s) URLs", parameter="image_url")

    def fetch_image(self, image_url: str, **kwargs: Any) -> Any:
        self._inline_only(image_url)
        return super().fetch_image(image_url, **kwargs)

    async def fetch_image_async(self, image_url: str, **kwargs: Any) -> Any:
        self._inline_only(image_url)
        return await super().fetch_image_async(image_url, **kwargs)


def install_media_connector(store: PreparedVideoStore) -> None:
    """Make vLLM's chat renderer in this process load media through our connector, reading from ``store``.

    vLLM has no per-app media connector, so ours replaces the process-wide one
    (:func:`server.runtime.vllm_seams.register_media_connector`); one process serves one app, so the last app wired
    wins.
    """
    register_media_connector(type("BoundPreparedVideoConnector", (PreparedVideoConnector,), {"store": store}))

"""Uploaded videos on disk: unguessable ids, a time to live, a total quota, and no partial file ever left.

Each upload is ``<dir>/<id>.bin`` plus ``<dir>/<id>.json`` (OpenAI's file object, the content hash and the
owner: a digest of the uploading API key, so one key never sees, reads or deletes another key's uploads). Bytes
are written to a hidden ``.partial`` name and renamed into place only when complete, so a failed or interrupted
upload leaves nothing; expired files are swept on every call and by the server's background task. The store
is synchronous (plain file I/O); the routes call it from a worker thread.
"""

from __future__ import annotations

import errno
import json
import re
import secrets
import shutil
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from sampling.cache import content_hash
from server.errors import APIError

FILE_ID = re.compile(r"^file-[0-9a-f]{32}$")


@dataclass(frozen=True)
class StoredFile:
    """OpenAI's file object, plus what we keep for caches."""

    id: str
    bytes: int
    created_at: int
    expires_at: int
    filename: str
    purpose: str
    sha256: str
    object: str = "file"
    status: str = "processed"
    owner: str = ""  # digest of the uploader's API key ("" when the server has no keys)

    def public(self) -> dict[str, object]:
        """The object as OpenAI's API returns it."""
        data = asdict(self)
        data.pop("sha256")
        data.pop("owner")
        return data


class FileStore:
    """Uploaded videos under ``root``, at most ``quota_bytes`` in total, each kept ``ttl_s`` seconds."""

    def __init__(self, root: Path, ttl_s: float, quota_bytes: int) -> None:
        self.root = root
        self.ttl_s = ttl_s
        self.quota_bytes = quota_bytes
        self._lock = threading.Lock()
        root.mkdir(parents=True, exist_ok=True)
        for leftover in root.glob(".*.partial"):  # a crash mid-write in a previous run
            leftover.unlink(missing_ok=True)

    def _paths(self, file_id: str) -> tuple[Path, Path]:
        return self.root / f"{file_id}.bin", self.root / f"{file_id}.json"

    def _load(self, meta_path: Path) -> StoredFile | None:
        try:
            return StoredFile(**json.loads(meta_path.read_text()))
        except (OSError, ValueError, TypeError):
            return None

    def _remove(self, file_id: str) -> None:
        for path in self._paths(file_id):
            path.unlink(missing_ok=True)

    def sweep(self) -> int:
        """Delete expired uploads; returns how many went."""
        now = time.time()
        removed = 0
        with self._lock:
            for meta_path in self.root.glob("file-*.json"):
                stored = self._load(meta_path)
                if stored is None or stored.expires_at <= now:
                    self._remove(meta_path.stem)
                    removed += 1
        return removed

    def list(self, owner: str = "") -> list[StoredFile]:
        """The owner's live uploads, newest first."""
        self.sweep()
        files = (self._load(path) for path in self.root.glob("file-*.json"))
        mine = (f for f in files if f is not None and f.owner == owner)
        return sorted(mine, key=lambda f: f.created_at, reverse=True)

    def used_bytes(self) -> int:
        return sum(path.stat().st_size for path in self.root.glob("file-*.bin"))

    def get(self, file_id: str, owner: str = "") -> StoredFile:
        """The file's record; 404 for ids that are malformed, unknown, expired or another key's (all
        indistinguishable on purpose: an id seen by one key tells another key nothing)."""
        stored = self._load(self._paths(file_id)[1]) if FILE_ID.match(file_id) else None
        if stored is None or stored.expires_at <= time.time() or stored.owner != owner:
            raise APIError(404, f"No such file: {file_id[:64]!r}.", "file_id")
        return stored

    def read(self, file_id: str, owner: str = "") -> tuple[StoredFile, bytes]:
        stored = self.get(file_id, owner)
        try:
            return stored, self._paths(file_id)[0].read_bytes()
        except FileNotFoundError as exc:
            raise APIError(404, f"No such file: {file_id!r}.", "file_id") from exc

    def delete(self, file_id: str, owner: str = "") -> StoredFile:
        stored = self.get(file_id, owner)
        with self._lock:
            self._remove(file_id)
        return stored

    def add(self, data: bytes, filename: str, purpose: str, owner: str = "") -> StoredFile:
        """Store ``data`` (already checked to be a video) under a fresh unguessable id, visible to ``owner`` only.

        The quota is shared by all keys (it protects the disk); per-key request quotas bound any one key."""
        self.sweep()
        with self._lock:
            if self.used_bytes() + len(data) > self.quota_bytes:
                raise APIError(507, "The upload store is full; delete files or try again later.", "file")
            if shutil.disk_usage(self.root).free < len(data) * 2:
                raise APIError(507, "The server is out of disk space for uploads.", "file")
            file_id = "file-" + secrets.token_hex(16)
            now = int(time.time())
            stored = StoredFile(
                id=file_id,
                bytes=len(data),
                created_at=now,
                expires_at=now + int(self.ttl_s),
                filename=Path(filename or "upload").name[:255],
                purpose=purpose,
                sha256=content_hash(data),
                owner=owner,
            )
            blob, meta = self._paths(file_id)
            partial = self.root / f".{file_id}.partial"
            try:
                partial.write_bytes(data)
                partial.rename(blob)
                meta.write_text(json.dumps(asdict(stored)))
            except OSError as exc:
                partial.unlink(missing_ok=True)
                self._remove(file_id)
                if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                    raise APIError(507, "The server is out of disk space for uploads.", "file") from exc
                raise
            return stored

"""Uploaded videos on disk: unguessable ids, a time to live, per-key and total quotas, nothing partial left behind.

Each upload is ``<dir>/<id>.bin`` plus ``<dir>/<id>.json`` (OpenAI's file object, the content hash, the video's
facts and the owner: a digest of the uploading API key, so one key never sees, reads or deletes another key's
uploads). An upload is received chunk by chunk into a hidden ``.<id>.partial`` file, hashed on the way, with no
lock held, so uploads proceed side by side; only the final quota check and rename take the store's lock, for
microseconds. A failed or interrupted upload leaves nothing, and a restart clears what a crash left (partial
writes, a blob without its record or a record without its blob) and what expired while the server was down.

The store keeps an index of its records in memory (one server process owns the directory), so listing and quota
accounting never read the disk. It is synchronous (plain file I/O); the routes call it from worker threads.
"""

from __future__ import annotations

import errno
import hashlib
import json
import re
import secrets
import shutil
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Literal, NamedTuple

from server.errors import APIError

if TYPE_CHECKING:  # settings import this module for the default directory
    from server.settings import ServerSettings

FILE_ID = re.compile(r"^file-[0-9a-f]{32}$")
MAX_REMEMBERED_EXPIRIES = 10_000  # expired ids whose owner still gets "expired" rather than "no such file"


@dataclass(frozen=True)
class StoredFile:
    """OpenAI's file object, plus what we keep for caches, quotas and clients (``video``: what the video is)."""

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
    video: dict[str, Any] | None = None  # sampling.decode.VideoInfo as a dict

    def public(self) -> dict[str, object]:
        """The object as our API returns it: OpenAI's fields plus the ``video`` extension."""
        data = asdict(self)
        data.pop("sha256")
        data.pop("owner")
        return data


class FilePage(NamedTuple):
    """One page of a listing, and whether more files follow it."""

    files: list[StoredFile]
    has_more: bool


@dataclass
class PendingUpload:
    """One upload being received: its bytes go to a hidden partial file as they arrive, hashed on the way."""

    path: Path
    size: int = 0
    hasher: Any = field(default_factory=hashlib.sha256)
    committed: bool = False

    def discard(self) -> None:
        """Remove the partial file unless it became a stored upload (safe to call more than once)."""
        if not self.committed:
            self.path.unlink(missing_ok=True)


def _raise_out_of_disk(exc: OSError) -> None:
    """A full disk is the server's condition (507), not a server bug; other OS errors propagate."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        raise APIError(507, "The server is out of disk space for uploads.", "file") from exc


class FileStore:
    """Uploaded videos under ``root``, each kept ``ttl_s`` seconds; every API key may keep ``quota_per_key_bytes``
    and all keys together ``quota_bytes`` (the disk's share for uploads)."""

    def __init__(self, root: Path, ttl_s: float, quota_bytes: int, quota_per_key_bytes: int | None = None) -> None:
        self.root = root
        self.ttl_s = ttl_s
        self.quota_bytes = quota_bytes
        self.quota_per_key_bytes = quota_bytes if quota_per_key_bytes is None else quota_per_key_bytes
        self._lock = threading.Lock()  # guards the index only; never held during file I/O of an upload
        self._index: dict[str, StoredFile] = {}
        self._expired: OrderedDict[str, tuple[str, int]] = OrderedDict()  # id -> (owner, expires_at)
        # uploads read whole (:meth:`read`), counted: a question about frames already prepared reads none
        self.reads = self.bytes_read = 0
        root.mkdir(parents=True, exist_ok=True)
        self._recover()

    @classmethod
    def configured(cls, settings: ServerSettings) -> FileStore:
        """The store the server's settings describe."""
        s = settings
        return cls(s.uploads_dir, s.upload_ttl_s, s.uploads_quota_bytes, s.uploads_quota_bytes_per_key)

    # --- start-up -------------------------------------------------------------------------------------------

    def _paths(self, file_id: str) -> tuple[Path, Path]:
        return self.root / f"{file_id}.bin", self.root / f"{file_id}.json"

    def _recover(self) -> None:
        """Load every complete, live upload; delete what a crash or an earlier run left behind."""
        for leftover in self.root.glob(".*.partial"):
            leftover.unlink(missing_ok=True)
        now = time.time()
        for meta_path in self.root.glob("file-*.json"):
            stored = self._load(meta_path)
            blob = meta_path.with_suffix(".bin")
            if stored is None or stored.id != meta_path.stem or not blob.is_file():
                self._remove(meta_path.stem)
            elif stored.expires_at <= now:
                self._forget_expired(stored)
            else:
                self._index[stored.id] = stored
        for blob in self.root.glob("file-*.bin"):
            if blob.stem not in self._index:
                blob.unlink(missing_ok=True)

    def _load(self, meta_path: Path) -> StoredFile | None:
        try:
            return StoredFile(**json.loads(meta_path.read_text()))
        except (OSError, ValueError, TypeError):
            return None

    def _remove(self, file_id: str) -> None:
        for path in self._paths(file_id):
            path.unlink(missing_ok=True)

    def _forget_expired(self, stored: StoredFile) -> None:
        """Delete an expired upload but remember, for a while, that it existed (so its owner hears "expired")."""
        self._remove(stored.id)
        self._index.pop(stored.id, None)
        self._expired[stored.id] = (stored.owner, stored.expires_at)
        while len(self._expired) > MAX_REMEMBERED_EXPIRIES:
            self._expired.popitem(last=False)

    # --- reading --------------------------------------------------------------------------------------------

    def sweep(self) -> int:
        """Delete expired uploads; returns how many went."""
        now = time.time()
        with self._lock:
            expired = [stored for stored in self._index.values() if stored.expires_at <= now]
            for stored in expired:
                self._forget_expired(stored)
        return len(expired)

    def list(
        self,
        owner: str = "",
        *,
        purpose: str | None = None,
        order: Literal["asc", "desc"] = "desc",
        after: str | None = None,
        limit: int | None = None,
    ) -> FilePage:
        """One page of the owner's live uploads (OpenAI's cursor pagination) and whether more follow.

        Sorted by ``created_at`` (ties by id, so the order is total and a cursor is exact); ``after`` is the id
        of the previous page's last file and must be one of the owner's live files (else 400 naming ``after``).
        """
        self.sweep()
        with self._lock:
            mine = [f for f in self._index.values() if f.owner == owner and (purpose is None or f.purpose == purpose)]
        mine.sort(key=lambda f: (f.created_at, f.id), reverse=order == "desc")
        start = 0
        if after is not None:
            position = next((i for i, f in enumerate(mine) if f.id == after), None)
            if position is None:
                raise APIError(400, f"after: no such file {after[:64]!r} among the listed files.", "after")
            start = position + 1
        end = len(mine) if limit is None else start + limit
        return FilePage(mine[start:end], end < len(mine))

    def usage(self, owner: str) -> tuple[int, int]:
        """Bytes stored by ``owner`` and by everyone."""
        with self._lock:
            return self._usage(owner)

    def _usage(self, owner: str) -> tuple[int, int]:
        total = mine = 0
        for stored in self._index.values():
            total += stored.bytes
            mine += stored.bytes if stored.owner == owner else 0
        return mine, total

    def get(self, file_id: str, owner: str = "") -> StoredFile:
        """The file's record; 404 for ids that are malformed, unknown or another key's (all indistinguishable on
        purpose: an id seen by one key tells another key nothing); the owner of an expired one hears so."""
        with self._lock:
            stored = self._index.get(file_id)
            expired = self._expired.get(file_id)
        if stored is not None and stored.expires_at <= time.time():
            expired, stored = (stored.owner, stored.expires_at), None
        if stored is not None and stored.owner == owner:
            return stored
        if expired is not None and expired[0] == owner:
            when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(expired[1]))
            message = f"The file {file_id!r} expired at {when} (uploads are kept {self.ttl_s:g} s); upload it again."
            raise APIError(404, message, "file_id")
        raise APIError(404, f"No such file: {file_id[:64]!r}.", "file_id")

    def open(self, file_id: str, owner: str = "") -> tuple[StoredFile, BinaryIO]:
        """The record and the blob opened for reading (open, so a delete meanwhile cannot cut a download short)."""
        stored = self.get(file_id, owner)
        try:
            return stored, self._paths(file_id)[0].open("rb")
        except FileNotFoundError as exc:
            raise APIError(404, f"No such file: {file_id!r}.", "file_id") from exc

    def read(self, file_id: str, owner: str = "") -> tuple[StoredFile, bytes]:
        stored = self.get(file_id, owner)
        try:
            data = self._paths(file_id)[0].read_bytes()
        except FileNotFoundError as exc:
            raise APIError(404, f"No such file: {file_id!r}.", "file_id") from exc
        with self._lock:
            self.reads += 1
            self.bytes_read += len(data)
        return stored, data

    def delete(self, file_id: str, owner: str = "") -> StoredFile:
        stored = self.get(file_id, owner)
        with self._lock:
            self._index.pop(file_id, None)
        self._remove(file_id)
        return stored

    # --- writing --------------------------------------------------------------------------------------------

    def receive(self, chunks: Iterable[bytes], max_bytes: int, param: str = "file") -> PendingUpload:
        """Write ``chunks`` to a new partial file, hashing as they come; 413 naming ``param`` past ``max_bytes``,
        400 when empty. The caller probes the result, then :meth:`commit`\\ s or discards it."""
        pending = PendingUpload(self.root / f".{secrets.token_hex(16)}.partial")
        try:
            with pending.path.open("xb") as out:
                for chunk in chunks:
                    pending.size += len(chunk)
                    if pending.size > max_bytes:
                        raise APIError(413, f"The video exceeds the limit of {max_bytes} bytes.", param)
                    pending.hasher.update(chunk)
                    out.write(chunk)
            if pending.size == 0:
                raise APIError(400, "The uploaded file is empty.", param)
        except OSError as exc:
            pending.discard()
            _raise_out_of_disk(exc)
            raise
        except BaseException:
            pending.discard()
            raise
        return pending

    def commit(
        self, pending: PendingUpload, filename: str, purpose: str, owner: str = "", video: dict[str, Any] | None = None
    ) -> StoredFile:
        """Turn a received upload into a stored file under a fresh unguessable id, visible to ``owner`` only;
        507 (saying which quota) when the key's quota or the store's total would be exceeded."""
        self.sweep()
        now = int(time.time())
        stored = StoredFile(
            id="file-" + secrets.token_hex(16),
            bytes=pending.size,
            created_at=now,
            expires_at=now + int(self.ttl_s),
            filename=Path(filename or "upload").name[:255],
            purpose=purpose,
            sha256=pending.hasher.hexdigest(),
            owner=owner,
            video=video,
        )
        blob, meta = self._paths(stored.id)
        with self._lock:
            mine, total = self._usage(owner)
            if mine + stored.bytes > self.quota_per_key_bytes:
                message = (
                    f"Your uploads would exceed this API key's quota of {self.quota_per_key_bytes} bytes "
                    f"({mine} in use); delete some of your files or wait for them to expire."
                )
                raise APIError(507, message, "file")
            if total + stored.bytes > self.quota_bytes:
                raise APIError(507, "The server's upload store is full (all keys together); try again later.", "file")
            if shutil.disk_usage(self.root).free < stored.bytes:
                raise APIError(507, "The server is out of disk space for uploads.", "file")
            self._index[stored.id] = stored  # reserves the quota; undone below if writing fails
        try:
            meta_partial = pending.path.with_suffix(".json.partial")
            meta_partial.write_text(json.dumps(asdict(stored)))
            pending.path.rename(blob)
            pending.committed = True
            meta_partial.rename(meta)
        except OSError as exc:
            with self._lock:
                self._index.pop(stored.id, None)
            meta_partial.unlink(missing_ok=True)
            self._remove(stored.id)
            _raise_out_of_disk(exc)
            raise
        return stored

    def add(
        self, data: bytes, filename: str, purpose: str, owner: str = "", video: dict[str, Any] | None = None
    ) -> StoredFile:
        """Store ``data`` (already checked to be a video) in one call: :meth:`receive` then :meth:`commit`."""
        pending = self.receive([data], max_bytes=len(data))
        try:
            return self.commit(pending, filename, purpose, owner, video)
        finally:
            pending.discard()
